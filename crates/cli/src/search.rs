//! `contrastive embed`, `contrastive index` and `contrastive search`: an embedding store of a
//! run's images, an HNSW index over it, and the nearest stored images of a query image.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use contrastive_data::{Channels, Resize, conform, image_from_hwc, read_image};
use contrastive_draw::{Tile, contact_sheet};
use contrastive_pgvector::{PgCollection, PgIndex, PgTarget};
use contrastive_retrieval::{
    Collection, CollectionInfo, EmbeddingStore, HnswConfig, HnswIndex, Item, LocalCollection,
    Metric,
};
use contrastive_tensor::parse_device;
use contrastive_trainer::{
    DatasetEmbedder, QueryEmbedder, embed_dataset, embed_query, images_for_ids,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `contrastive embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The run directory (its config.toml names the data).
    run: PathBuf,
    /// The weights (default: RUN/model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the embeddings go: a store file (default: RUN/store.safetensors), or a
    /// PostgreSQL collection, postgres://USER@HOST:PORT/DB?collection=NAME, filled
    /// incrementally (what it holds is skipped; a re-run after a crash adds the rest).
    #[arg(long, alias = "out")]
    to: Option<String>,
    /// Also write the embeddings as a NumPy .npy file (store files only).
    #[arg(long)]
    npy: Option<PathBuf>,
    /// A new PostgreSQL collection's metric: cosine, ip or l2.
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// A new PostgreSQL collection's HNSW links per node (pgvector's m).
    #[arg(long, default_value_t = PgIndex::default().m)]
    m: u32,
    /// A new PostgreSQL collection's HNSW build candidates (pgvector's ef_construction).
    #[arg(long, default_value_t = PgIndex::default().ef_construction)]
    ef_construction: u32,
}

/// Images embedded and inserted per step (one transaction per 500 rows within it).
const EMBED_CHUNK: usize = 1000;

/// Runs `contrastive embed`.
pub fn embed(args: EmbedArgs) -> Result<()> {
    let (config, model) = crate::eval::open_run(&args.run, &[], args.model.clone())?;
    if let Some(url) = args.to.as_deref().filter(|t| t.starts_with("postgres")) {
        if args.npy.is_some() {
            anyhow::bail!("--npy writes a store's embeddings; it does not go with a database");
        }
        return embed_into_database(&args, url, &config, &model);
    }
    let store = embed_dataset(&config, &model)
        .with_context(|| format!("embedding with {}", model.display()))?;
    let out = args
        .to
        .map(PathBuf::from)
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

/// Embeds the run's images into a PostgreSQL collection, skipping the ids it holds, in
/// chunks whose inserts commit as they go.
fn embed_into_database(
    args: &EmbedArgs,
    url: &str,
    config: &contrastive_trainer::TrainConfig,
    model: &Path,
) -> Result<()> {
    let target: PgTarget = url.parse()?;
    let run = DatasetEmbedder::open(config, model)
        .with_context(|| format!("loading {} and its data", model.display()))?;
    // The width comes from the model itself: one image embedded.
    let dim = run.embed(&[0]).context("embedding a first image")?.size()[1] as usize;
    let info = CollectionInfo {
        model: run.identity().to_owned(),
        dim,
        metric: args.metric.parse()?,
        preprocess: run.preprocess(),
    };
    let index = PgIndex {
        m: args.m,
        ef_construction: args.ef_construction,
        ..PgIndex::default()
    };
    let mut collection = PgCollection::open_or_create(&target, &info, index)?;
    let items = run.items();
    // Copies within the data (the same pixels under two names) are embedded once.
    let (unique, mut copies) = first_of_each_content(items);
    let bar = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images ({per_sec}, {eta} left)")
            .expect("a valid template"),
    );
    bar.inc(copies.len() as u64);
    let start = Instant::now();
    let mut added = 0;
    for part in unique.chunks(EMBED_CHUNK) {
        let asked: Vec<Item> = part.iter().map(|&r| items[r].clone()).collect();
        let held = collection.held(&asked)?;
        copies.extend(
            (held.iter())
                .filter(|(id, under)| id != under)
                .map(|(id, under)| (id.clone(), under.clone())),
        );
        let rows: Vec<usize> = (part.iter().copied())
            .filter(|&r| !held.contains_key(&items[r].id))
            .collect();
        if !rows.is_empty() {
            let vectors = run.embed(&rows)?;
            let fresh: Vec<Item> = rows.iter().map(|&r| items[r].clone()).collect();
            added += collection.add(&fresh, &vectors, run.identity())?;
        }
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    println!(
        "{added} new embeddings of width {dim} in {target} ({} already held), {} in all, {:.1} s",
        items.len() - added,
        collection.count()?,
        start.elapsed().as_secs_f64()
    );
    copies.sort();
    if let Some((id, under)) = copies.first() {
        println!(
            "{} of the images are copies of others (the same pixels under another name), such \
             as {id} of {under}; each is held once",
            copies.len()
        );
    }
    Ok(())
}

/// The rows of `items` whose content comes first, and the later copies as (id, id of the
/// first).
fn first_of_each_content(items: &[Item]) -> (Vec<usize>, Vec<(String, String)>) {
    let mut first: HashMap<&String, usize> = HashMap::new();
    let mut unique = Vec::with_capacity(items.len());
    let mut copies = Vec::new();
    for (row, item) in items.iter().enumerate() {
        match item.content.as_ref().map(|c| first.entry(c)) {
            Some(Entry::Occupied(held)) => {
                copies.push((item.id.clone(), items[*held.get()].id.clone()));
            }
            Some(Entry::Vacant(slot)) => {
                slot.insert(row);
                unique.push(row);
            }
            None => unique.push(row),
        }
    }
    (unique, copies)
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
    #[arg(long, required_unless_present = "model")]
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
    /// Search a PostgreSQL collection instead: postgres://USER@HOST:PORT/DB?collection=NAME.
    #[arg(long, conflicts_with_all = ["store", "index", "metric"])]
    db: Option<String>,
    /// Only neighbours with this label.
    #[arg(long)]
    label: Option<String>,
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
    let model_path = args
        .model
        .clone()
        .or_else(|| beside("model.safetensors"))
        .context("give --run or --model")?;
    let device = parse_device(&args.device)?;
    // The store or database is opened (and checked) before the query is read.
    let searcher = match &args.db {
        Some(url) => database_searcher(&args, url, &model_path, device)?,
        None => {
            let store = args
                .store
                .clone()
                .or_else(|| beside("store.safetensors"))
                .context("give --run or --store")?;
            store_searcher(&args, &store, &model_path, device)?
        }
    };
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
    let hits = searcher(image.clone())?;
    let (scores, ids): (Vec<f32>, Vec<String>) = hits.into_iter().unzip();
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

/// Finds the nearest items of a query image: scores and ids, best first.
type Searcher<'a> = Box<dyn FnOnce(image::DynamicImage) -> Result<Vec<(f32, String)>> + 'a>;

/// The search over the store at `store_path` (or its index), opened and checked.
fn store_searcher<'a>(
    args: &'a SearchArgs,
    store_path: &Path,
    model_path: &'a Path,
    device: contrastive_tensor::Device,
) -> Result<Searcher<'a>> {
    let store = EmbeddingStore::load(store_path).with_context(|| {
        format!(
            "reading {} (make it with `contrastive embed`)",
            store_path.display()
        )
    })?;
    if store.is_empty() {
        anyhow::bail!("{} holds no embeddings", store_path.display());
    }
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
    Ok(Box::new(move |image| {
        let query = embed_query(model_path, &store, image, device)
            .with_context(|| format!("embedding the query with {}", model_path.display()))?;
        warn_beyond(args.k, store.len());
        if let Some(label) = &args.label {
            let mut collection = LocalCollection::new(store, metric);
            let hits = collection.search(&query, args.k, Some(label))?;
            return Ok(hits.into_iter().map(|h| (h.score, h.item.id)).collect());
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
        Ok(indices
            .iter()
            .zip(scores)
            .filter(|(i, _)| **i >= 0)
            .map(|(&i, score)| (score, store.info().ids[i as usize].clone()))
            .collect())
    }))
}

/// The search over a PostgreSQL collection, opened and checked against the model.
fn database_searcher<'a>(
    args: &'a SearchArgs,
    url: &str,
    model_path: &Path,
    device: contrastive_tensor::Device,
) -> Result<Searcher<'a>> {
    let target: PgTarget = url.parse()?;
    let mut collection = PgCollection::open(&target)?;
    let info = collection.info().clone();
    let embedder = QueryEmbedder::open(model_path, &info.preprocess, device)?;
    if embedder.identity() != info.model {
        anyhow::bail!(
            "{target} holds embeddings of another model than {}; search it with its own run",
            model_path.display()
        );
    }
    Ok(Box::new(move |image| {
        let query = embedder.embed(vec![image])?;
        warn_beyond(args.k, collection.count()?);
        let hits = collection.search(&query, args.k, args.label.as_deref())?;
        Ok(hits.into_iter().map(|h| (h.score, h.item.id)).collect())
    }))
}

/// Warns that `k` is more than the collection holds.
fn warn_beyond(k: usize, held: usize) {
    if k > held {
        eprintln!("warning: k = {k} is more than the {held} stored items; showing all");
    }
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
