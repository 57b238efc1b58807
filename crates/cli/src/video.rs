//! `contrastive video`: the demo video set, and searching videos with a trained model (a
//! frame: which video shows it and when; a clip: which videos are most like it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use contrastive_data::{Channels, Resize, conform, read_image};
use contrastive_draw::{Tile, contact_sheet};
use contrastive_retrieval::EmbeddingStore;
use contrastive_trainer::{VideoCollection, VideoHit, ensure_demo};

use crate::file_name;

/// The frame store's file in a run directory.
const FRAME_STORE: &str = "frames.safetensors";

/// Arguments of `contrastive video`.
#[derive(Args, Debug)]
pub struct VideoArgs {
    #[command(subcommand)]
    command: VideoCommand,
}

#[derive(Subcommand, Debug)]
enum VideoCommand {
    /// Generate the demo video set (Fashion-MNIST items moving over textured backgrounds,
    /// with scene cuts) into a folder: train/ (120 videos) and test/ (20).
    Demo {
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Embeds every frame of a set of videos once into a frame store that `video search`
    /// answers from in about a second; run again after videos are added or changed, it
    /// embeds only those.
    Embed(EmbedArgs),
    /// The videos most like a query frame (with the moment that matches) or a query clip.
    Search(SearchArgs),
}

/// Arguments of `contrastive video embed`.
#[derive(Args, Debug)]
struct EmbedArgs {
    /// The run directory of a model trained on video.
    #[arg(long)]
    run: PathBuf,
    /// Folders of videos to embed (repeatable; default: the run's own video folder).
    #[arg(long = "videos")]
    videos: Vec<PathBuf>,
    /// The frame store to write or bring up to date (default: RUN/frames.safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `contrastive video search`.
#[derive(Args, Debug)]
struct SearchArgs {
    /// The run directory of a model trained on video.
    #[arg(long)]
    run: PathBuf,
    /// A query frame (any size or channel count).
    #[arg(long, required_unless_present = "clip", conflicts_with = "clip")]
    image: Option<PathBuf>,
    /// A query video file: videos are ranked by their mean frame embedding.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Folders of videos to search, embedded for this search alone (repeatable; default:
    /// the frame store, else the run's own video folder).
    #[arg(long = "videos", conflicts_with = "frames")]
    videos: Vec<PathBuf>,
    /// The frame store to search (from `contrastive video embed`; default:
    /// RUN/frames.safetensors when it exists).
    #[arg(long)]
    frames: Option<PathBuf>,
    /// Videos to list.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// The contact sheet to write: the query and each video's best-matching frame.
    #[arg(long, default_value = "video-search.png")]
    sheet: PathBuf,
}

/// Runs `contrastive video`.
pub fn run(args: VideoArgs) -> Result<()> {
    match args.command {
        VideoCommand::Demo { out } => {
            ensure_demo(&out)
                .with_context(|| format!("writing the demo set to {}", out.display()))?;
            println!("demo videos in {} (train/, test/)", out.display());
            Ok(())
        }
        VideoCommand::Embed(args) => embed(args),
        VideoCommand::Search(args) => search(args),
    }
}

fn embed(args: EmbedArgs) -> Result<()> {
    let out = args.out.unwrap_or_else(|| args.run.join(FRAME_STORE));
    crate::check_output("--out", &out)?;
    let (config, model) = crate::eval::open_run(&args.run, &[], None)?;
    // A store that cannot be read (damaged, or not a frame store) is rebuilt, not trusted.
    let previous = if out.exists() {
        EmbeddingStore::load(&out)
            .inspect_err(|e| tracing::warn!("{}: {e}; embedding every video again", out.display()))
            .ok()
    } else {
        None
    };
    let (collection, update) =
        VideoCollection::update(&config, &model, &args.videos, previous.as_ref(), Some(&out))
            .with_context(|| format!("embedding the videos with {}", model.display()))?;
    println!(
        "{}: {} videos, {} frames ({} embedded, {} kept, {} dropped)",
        out.display(),
        collection.videos().len(),
        collection.store().len(),
        update.embedded,
        update.reused,
        update.dropped
    );
    Ok(())
}

fn search(args: SearchArgs) -> Result<()> {
    crate::check_output("--sheet", &args.sheet)?;
    let (config, model) = crate::eval::open_run(&args.run, &[], None)?;
    let frames = args.frames.clone().or_else(|| {
        let beside = args.run.join(FRAME_STORE);
        (args.videos.is_empty() && beside.is_file()).then_some(beside)
    });
    let collection = match &frames {
        Some(frames) => VideoCollection::open(&config, &model, frames)
            .with_context(|| format!("opening the frame store {}", frames.display()))?,
        None => {
            let collection = VideoCollection::embed(&config, &model, &args.videos)
                .with_context(|| format!("embedding the videos with {}", model.display()))?;
            eprintln!(
                "note: every frame was embedded for this search; `contrastive video embed --run \
                 {}` does it once",
                args.run.display()
            );
            collection
        }
    };
    let (hits, query_image, query_path) = match (&args.image, &args.clip) {
        (Some(path), _) => {
            let image = read_image(path).context("reading the query image")?;
            let query = collection.embed_image(image.clone())?;
            let hits = collection.search_frame(&query, args.k)?;
            (hits, conform(image, Channels::Keep, Resize::Keep), path)
        }
        (None, Some(path)) => {
            let (frames, middle) = collection
                .embed_clip(path)
                .with_context(|| format!("reading the query clip {}", path.display()))?;
            (collection.search_clip(&frames, args.k)?, middle, path)
        }
        (None, None) => unreachable!("clap requires --image or --clip"),
    };
    println!("rank  score    time      frame  video");
    for (rank, hit) in hits.iter().enumerate() {
        println!(
            "{:>4}  {:>7.4}  {:>8}  {:>5}  {} ({})",
            rank + 1,
            hit.score,
            timestamp(hit),
            hit.frame,
            hit.name,
            hit.path.display()
        );
    }
    let tiles: Vec<Tile> = hits
        .iter()
        .map(|h| Tile {
            image: h.image.clone(),
            score: Some(h.score),
            caption: format!("{} {}", h.name, timestamp(h)),
        })
        .collect();
    let query = Tile {
        image: query_image,
        score: None,
        caption: file_name(query_path),
    };
    contact_sheet(&args.sheet, &query, &tiles)
        .with_context(|| format!("writing the contact sheet {}", args.sheet.display()))?;
    println!("contact sheet  {}", args.sheet.display());
    Ok(())
}

/// `m:ss.s` of a hit, or `-` when the frame rate is unknown.
fn timestamp(hit: &VideoHit) -> String {
    hit.time.map_or_else(
        || "-".to_owned(),
        |t| format!("{}:{:04.1}", (t / 60.0) as u64, t % 60.0),
    )
}
