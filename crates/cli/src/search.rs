//! `contrastive embed`, `contrastive index` and `contrastive search`: an embedding store of a
//! run's images, an HNSW index over it, and the nearest stored images of a query image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use contrastive_data::{Channels, Resize, conform, image_from_hwc, read_image};
use contrastive_retrieval::{EmbeddingStore, HnswConfig, HnswIndex, Metric};
use contrastive_tensor::parse_device;
use contrastive_trainer::{Tile, contact_sheet, embed_dataset, embed_query, images_for_ids};

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

/// Arguments of `contrastive index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The store to index (made by `contrastive embed`).
    store: PathBuf,
    /// The index to write (default: the store's path with `.hnsw.safetensors`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Links per node on the upper layers (layer 0 keeps twice as many).
    #[arg(long, default_value_t = HnswConfig::default().m)]
    m: usize,
    /// Candidates considered while inserting.
    #[arg(long, default_value_t = HnswConfig::default().ef_construction)]
    ef_construction: usize,
    /// Candidates considered while searching (a default that `search --ef` overrides).
    #[arg(long, default_value_t = HnswConfig::default().ef_search)]
    ef_search: usize,
    /// cosine, ip or l2.
    #[arg(long, default_value = "cosine")]
    metric: String,
}

/// Where the HNSW index of `store` goes by default.
fn index_beside(store: &Path) -> PathBuf {
    store.with_extension("hnsw.safetensors")
}

/// Runs `contrastive index`.
pub fn index(args: IndexArgs) -> Result<()> {
    let store = EmbeddingStore::load(&args.store)
        .with_context(|| format!("reading {}", args.store.display()))?;
    if store.is_empty() {
        anyhow::bail!("{} holds no embeddings", args.store.display());
    }
    let config = HnswConfig::default()
        .with_m(args.m)
        .with_ef_construction(args.ef_construction)
        .with_ef_search(args.ef_search)
        .with_metric(args.metric.parse()?);
    let start = Instant::now();
    let mut index = HnswIndex::build(store.embeddings(), config)?;
    index.set_label(&store.info().model);
    let out = args.out.unwrap_or_else(|| index_beside(&args.store));
    index
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "HNSW index of {} vectors (m {}, ef_construction {}) in {:.1} s, {:.0} MiB: {}",
        index.len(),
        config.m,
        config.ef_construction,
        start.elapsed().as_secs_f64(),
        index.memory_bytes() as f64 / (1 << 20) as f64,
        out.display()
    );
    Ok(())
}

/// Arguments of `contrastive search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The query image (any size or channel count: it is prepared as the store's images).
    #[arg(
        long,
        required_unless_present = "query_id",
        conflicts_with = "query_id"
    )]
    image: Option<PathBuf>,
    /// Take the query from the run's data instead: an id such as `fashion-mnist:test:17`.
    #[arg(long, requires = "run")]
    query_id: Option<String>,
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
    /// cosine, ip or l2 (with --index: the index's metric, unless given).
    #[arg(long)]
    metric: Option<String>,
    /// Search this HNSW index (made by `contrastive index`) instead of scanning the store.
    #[arg(long)]
    index: Option<PathBuf>,
    /// With --index: candidates considered (default: the index's ef_search).
    #[arg(long, requires = "index")]
    ef: Option<usize>,
    /// Device for the query's forward pass.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The contact sheet to write: the query and its neighbours with their scores.
    #[arg(long, default_value = "search.png")]
    sheet: PathBuf,
}

/// Runs `contrastive search`.
pub fn search(args: SearchArgs) -> Result<()> {
    crate::check_output("--sheet", &args.sheet)?;
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
    // The index is checked before the query is embedded, so a mismatch fails at once.
    let index = match &args.index {
        Some(path) => Some(open_index(path, &store)?),
        None => None,
    };
    let metric: Metric = match (&args.metric, &index) {
        (Some(metric), _) => metric.parse()?,
        (None, Some(index)) => index.config().metric,
        (None, None) => Metric::Cosine,
    };
    if let Some(index) = &index
        && metric != index.config().metric
    {
        anyhow::bail!(
            "the index was built for {:?}, not {metric:?}; build another with `contrastive \
             index --metric`",
            index.config().metric
        );
    }
    let config = match &args.run {
        Some(run) => Some(crate::eval::open_run(run, &[], None)?.0),
        None => None,
    };
    let image = match (&args.image, &args.query_id) {
        (Some(path), _) => read_image(path).context("reading the query image")?,
        (None, Some(id)) => {
            let item = images_for_ids(config.as_ref(), std::slice::from_ref(id))
                .with_context(|| format!("reading the query {id}"))?
                .remove(0);
            image_from_hwc(item.view())?
        }
        (None, None) => anyhow::bail!("give --image or --query-id"),
    };
    let query = embed_query(&model_path, &store, image.clone(), device)
        .with_context(|| format!("embedding the query with {}", model_path.display()))?;
    if args.k > store.len() {
        eprintln!(
            "warning: k = {} is more than the {} stored items; showing all",
            args.k,
            store.len()
        );
    }
    let found = match &index {
        Some(index) => {
            let ef = args.ef.unwrap_or(index.config().ef_search);
            index.search_with(&query, args.k, ef)?
        }
        None => store.search(&query, args.k, metric)?,
    };
    let scores = Vec::<f32>::try_from(&found.scores.get(0))?;
    let indices = Vec::<i64>::try_from(&found.indices.get(0))?;
    let ids: Vec<String> = indices
        .iter()
        .filter(|&&i| i >= 0)
        .map(|&i| store.info().ids[i as usize].clone())
        .collect();
    println!("rank  score    id");
    for (rank, (score, id)) in scores.iter().zip(&ids).enumerate() {
        println!("{:>4}  {score:>7.4}  {id}", rank + 1);
    }

    let neighbours = images_for_ids(config.as_ref(), &ids)
        .context("reading the neighbours' images for the contact sheet")?;
    let query = Tile {
        image: conform(image, Channels::Keep, Resize::Keep),
        score: None,
        caption: match (&args.image, &args.query_id) {
            (Some(path), _) => crate::file_name(path),
            (None, id) => id.clone().unwrap_or_default(),
        },
    };
    let tiles: Vec<Tile> = neighbours
        .into_iter()
        .zip(&scores)
        .zip(&ids)
        .map(|((image, &score), id)| Tile {
            image,
            score: Some(f64::from(score)),
            caption: crate::file_name(std::path::Path::new(id)),
        })
        .collect();
    contact_sheet(&args.sheet, &query, &tiles)
        .with_context(|| format!("writing the contact sheet {}", args.sheet.display()))?;
    println!("contact sheet  {}", args.sheet.display());
    Ok(())
}

/// The HNSW index at `path`, checked to hold `store`'s vectors.
fn open_index(path: &Path, store: &EmbeddingStore) -> Result<HnswIndex> {
    let index = HnswIndex::load(path).with_context(|| {
        format!(
            "reading {} (make it with `contrastive index`)",
            path.display()
        )
    })?;
    if index.label() != store.info().model || index.len() != store.len() {
        anyhow::bail!(
            "{} indexes {} vectors of model {:?}, the store holds {} of model {:?}; rebuild it \
             with `contrastive index`",
            path.display(),
            index.len(),
            index.label(),
            store.len(),
            store.info().model
        );
    }
    Ok(index)
}
