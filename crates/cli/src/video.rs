//! `contrastive video`: the demo video set, and searching videos with a trained model (a
//! frame: which video shows it and when; a clip: which videos are most like it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use contrastive_data::{Channels, Resize, conform, read_image};
use contrastive_trainer::{VideoCollection, VideoHit, contact_sheet, ensure_demo};

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
    /// The videos most like a query frame (with the moment that matches) or a query clip.
    Search(SearchArgs),
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
    /// Folders of videos to search (repeatable; default: the run's own video folder).
    #[arg(long = "videos")]
    videos: Vec<PathBuf>,
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
        VideoCommand::Search(args) => search(args),
    }
}

fn search(args: SearchArgs) -> Result<()> {
    crate::check_output("--sheet", &args.sheet)?;
    let (config, model) = crate::eval::open_run(&args.run, &[], None)?;
    let collection = VideoCollection::embed(&config, &model, &args.videos)
        .with_context(|| format!("embedding the videos with {}", model.display()))?;
    for warning in &collection.warnings {
        eprintln!("warning: {warning}");
    }
    let (hits, query_image) = match (&args.image, &args.clip) {
        (Some(path), _) => {
            let image = read_image(path).context("reading the query image")?;
            let query = collection.embed_image(image.clone())?;
            let hits = collection.search_frame(&query, args.k)?;
            (hits, conform(image, Channels::Keep, Resize::Keep))
        }
        (None, Some(path)) => {
            let frames = collection
                .embed_video(&config, path)
                .with_context(|| format!("reading the query clip {}", path.display()))?;
            let hits = collection.search_clip(&frames, args.k)?;
            let first = hits
                .first()
                .map(|h| h.image.clone())
                .context("no videos to search")?;
            (hits, first)
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
    let scored: Vec<_> = hits.iter().map(|h| (h.image.clone(), h.score)).collect();
    contact_sheet(&args.sheet, &query_image, &scored)
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
