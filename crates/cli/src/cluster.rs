//! `contrastive cluster`: k-means over an embedding store, a grid of sample images per
//! cluster and a 2-D map of the embeddings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use contrastive_draw::{cluster_grid, scatter};
use contrastive_retrieval::{EmbeddingStore, KMeans, normalize, pca_2d, tsne_2d};
use contrastive_tensor::Tensor;
use contrastive_trainer::images_for_ids;

/// Arguments of `contrastive cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// The run directory holding store.safetensors (from `contrastive embed`).
    #[arg(long, required_unless_present = "store")]
    run: Option<PathBuf>,
    /// The store (default: RUN/store.safetensors).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Clusters.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Seed of k-means++.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images shown per cluster (those nearest its centre).
    #[arg(long, default_value_t = 10)]
    per_cluster: usize,
    /// The grid of sample images to write.
    #[arg(long, default_value = "clusters.png")]
    grid: PathBuf,
    /// The 2-D map to write, points coloured by cluster.
    #[arg(long, default_value = "map.png")]
    map: PathBuf,
    /// How the map is made: pca (the two leading principal components; instant) or tsne
    /// (Barnes-Hut t-SNE started from the PCA map; about a minute for 6000 points).
    #[arg(long, default_value = "pca")]
    map_method: String,
    /// t-SNE perplexity (5 to 100): about how many neighbours each point keeps close.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// Points drawn on the map at most (evenly spaced through the store).
    #[arg(long, default_value_t = 6000)]
    map_points: usize,
}

/// Runs `contrastive cluster`.
pub fn run(args: ClusterArgs) -> Result<()> {
    if !["pca", "tsne"].contains(&args.map_method.as_str()) {
        bail!("--map-method {}: pca or tsne", args.map_method);
    }
    let store_path = args
        .store
        .clone()
        .or_else(|| args.run.as_ref().map(|r| r.join("store.safetensors")))
        .context("give --run or --store")?;
    let store = EmbeddingStore::load(&store_path).with_context(|| {
        format!(
            "reading {} (make it with `contrastive embed`)",
            store_path.display()
        )
    })?;
    if store.len() < args.k {
        bail!(
            "{} holds {} embeddings, fewer than k = {}",
            store_path.display(),
            store.len(),
            args.k
        );
    }
    let x = normalize(store.embeddings());
    let clustering = KMeans::new(args.k, args.seed).fit(&x)?;
    let labels = &clustering.labels;
    let mut members = clustering.members_by_distance(&x)?;
    println!("cluster  size");
    let config = match &args.run {
        Some(run) => Some(crate::eval::open_run(run, &[], None)?.0),
        None => None,
    };
    // The most typical members of every cluster, read in one pass (a dataset is loaded once).
    let mut ids = Vec::new();
    let mut shown = Vec::new();
    for (cluster, items) in members.iter_mut().enumerate() {
        println!("{cluster:>7}  {}", items.len());
        let typical: Vec<String> = items
            .iter()
            .take(args.per_cluster)
            .map(|&i| store.info().ids[i].clone())
            .collect();
        shown.push(typical.len());
        ids.extend(typical);
    }
    let mut images = images_for_ids(config.as_ref(), &ids)
        .context("reading sample images for the cluster grid")?
        .into_iter();
    let rows: Vec<_> = shown
        .iter()
        .zip(&members)
        .map(|(&count, items)| (images.by_ref().take(count).collect(), items.len()))
        .collect();
    cluster_grid(&args.grid, &rows)?;
    println!("grid     {}", args.grid.display());

    // The map of an evenly spaced sample.
    let step = store.len().div_ceil(args.map_points.max(1));
    let sample: Vec<i64> = (0..store.len()).step_by(step).map(|i| i as i64).collect();
    let points = x.index_select(0, &Tensor::from_slice(&sample));
    let (projected, method) = match args.map_method.as_str() {
        "pca" => (pca_2d(&points)?, "PCA"),
        "tsne" => (tsne_2d(&points, args.perplexity)?, "t-SNE"),
        _ => unreachable!("checked on entry"),
    };
    let coords = Vec::<f32>::try_from(&projected.flatten(0, -1))?;
    let drawn: Vec<(f64, f64, usize)> = sample
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            (
                f64::from(coords[2 * j]),
                f64::from(coords[2 * j + 1]),
                labels[i as usize],
            )
        })
        .collect();
    let legend: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(cluster, items)| format!("cluster {cluster} ({} items)", items.len()))
        .collect();
    scatter(
        &args.map,
        &format!("{method} of the embeddings, coloured by k-means cluster"),
        &drawn,
        &legend,
    )?;
    println!("map      {}", args.map.display());
    Ok(())
}
