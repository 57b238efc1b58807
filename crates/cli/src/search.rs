//! `contrastive embed` and `contrastive search`: an embedding store of a run's images, and
//! the nearest stored images of a query image.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use contrastive_data::{Channels, Resize, conform};
use contrastive_retrieval::{EmbeddingStore, Metric};
use contrastive_tensor::parse_device;
use contrastive_trainer::{contact_sheet, embed_dataset, embed_query, images_for_ids};

/// Arguments of `contrastive embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The run directory (its config.toml names the data).
    run: PathBuf,
    /// The weights (default: RUN/model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The store to write (default: RUN/store.safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the embeddings as a NumPy .npy file.
    #[arg(long)]
    npy: Option<PathBuf>,
}

/// Runs `contrastive embed`.
pub fn embed(args: EmbedArgs) -> Result<()> {
    let (config, model) = crate::eval::open_run(&args.run, &[], args.model)?;
    let store = embed_dataset(&config, &model)
        .with_context(|| format!("embedding with {}", model.display()))?;
    let out = args
        .out
        .unwrap_or_else(|| args.run.join("store.safetensors"));
    store
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} embeddings of width {} in {}",
        store.len(),
        store.dim(),
        out.display()
    );
    if let Some(npy) = args.npy {
        store
            .export_npy(&npy)
            .with_context(|| format!("writing {}", npy.display()))?;
        println!("also as {}", npy.display());
    }
    Ok(())
}

/// Arguments of `contrastive search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The query image (any size or channel count: it is prepared as the store's images).
    #[arg(long)]
    image: PathBuf,
    /// The run directory holding model.safetensors and store.safetensors.
    #[arg(long, required_unless_present_all = ["store", "model"])]
    run: Option<PathBuf>,
    /// The store (default: RUN/store.safetensors).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The model that made the store (default: RUN/model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Neighbours to show.
    #[arg(short, long, default_value_t = 8)]
    k: usize,
    /// cosine, ip or l2.
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// Device for the query's forward pass.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The contact sheet to write: the query and its neighbours with their scores.
    #[arg(long, default_value = "search.png")]
    sheet: PathBuf,
}

/// Runs `contrastive search`.
pub fn search(args: SearchArgs) -> Result<()> {
    let beside = |name: &str| args.run.as_ref().map(|r| r.join(name));
    let store_path = args
        .store
        .clone()
        .or_else(|| beside("store.safetensors"))
        .context("give --run or --store")?;
    let model_path = args
        .model
        .clone()
        .or_else(|| beside("model.safetensors"))
        .context("give --run or --model")?;
    let metric: Metric = args.metric.parse()?;
    let device = parse_device(&args.device)?;
    let store = EmbeddingStore::load(&store_path).with_context(|| {
        format!(
            "reading {} (make it with `contrastive embed`)",
            store_path.display()
        )
    })?;
    if store.is_empty() {
        anyhow::bail!("{} holds no embeddings", store_path.display());
    }
    let image = image::open(&args.image)
        .with_context(|| format!("reading the query image {}", args.image.display()))?;
    let query = embed_query(&model_path, &store, image.clone(), device)
        .with_context(|| format!("embedding the query with {}", model_path.display()))?;
    if args.k > store.len() {
        eprintln!(
            "warning: k = {} is more than the {} stored items; showing all",
            args.k,
            store.len()
        );
    }
    let found = store.search(&query, args.k, metric)?;
    let scores = Vec::<f32>::try_from(&found.scores.get(0))?;
    let indices = Vec::<i64>::try_from(&found.indices.get(0))?;
    let ids: Vec<String> = indices
        .iter()
        .map(|&i| store.info().ids[i as usize].clone())
        .collect();
    println!("rank  score    id");
    for (rank, (score, id)) in scores.iter().zip(&ids).enumerate() {
        println!("{:>4}  {score:>7.4}  {id}", rank + 1);
    }

    let config = match &args.run {
        Some(run) => Some(crate::eval::open_run(run, &[], None)?.0),
        None => None,
    };
    let neighbours = images_for_ids(config.as_ref(), &ids)
        .context("reading the neighbours' images for the contact sheet")?;
    let query_image = conform(image, Channels::Keep, Resize::Keep);
    let scored: Vec<_> = neighbours
        .into_iter()
        .zip(scores.iter().map(|&s| f64::from(s)))
        .collect();
    contact_sheet(&args.sheet, &query_image, &scored)?;
    println!("contact sheet  {}", args.sheet.display());
    Ok(())
}
