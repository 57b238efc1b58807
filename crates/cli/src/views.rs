//! `contrastive views`: a picture of the views a run config makes, to see what a `[views]`
//! change does before training with it.

use anyhow::{Context, Result, bail};
use clap::Args;
use contrastive_augment::view_rows;
use contrastive_data::{Channels, Resize, conform, read_image};
use contrastive_draw::view_grid;
use contrastive_trainer::{TrainConfig, load_data, view_transforms};
use std::path::PathBuf;

/// Arguments of `contrastive views`.
#[derive(Args, Debug)]
pub struct ViewsArgs {
    /// The run config whose views to show.
    #[arg(long)]
    config: PathBuf,
    /// Override any key: --set section.key=value (repeatable), e.g. views.rotation=15.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A picture to make the views of, instead of images of the config's dataset.
    #[arg(long)]
    image: Option<PathBuf>,
    /// How many images of the dataset (rows), taken across its held-out split.
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// Views per image (columns after the image): the run's views in turn (two, then any
    /// local ones), again from the start when there are more columns.
    #[arg(long, default_value_t = 8)]
    views: usize,
    /// Seed of the views.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "views.png")]
    out: PathBuf,
}

/// Runs `contrastive views`: writes the grid and says what it shows.
pub fn run(args: ViewsArgs) -> Result<()> {
    if args.rows == 0 || args.views == 0 {
        bail!("--rows and --views must be at least 1");
    }
    let config = TrainConfig::load(&args.config, &args.set)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let data = load_data(&config.data).context("loading the config's data")?;
    let sources = match &args.image {
        Some(path) => {
            let picture = read_image(path)?;
            vec![conform(picture, Channels::Keep, Resize::Keep)]
        }
        None => {
            let split = data.test.as_ref().unwrap_or(&data.train);
            let n = split.images.len();
            let stride = (n / args.rows).max(1);
            (0..args.rows.min(n))
                .map(|r| split.images[r * stride].clone())
                .collect()
        }
    };
    let transforms = view_transforms(&config.data, &config.views, data.size, 2)?;
    let rows = view_rows(&sources, &transforms, args.views, args.seed)?;
    view_grid(&args.out, &rows)?;
    println!(
        "views: wrote {} ({} images x {} views)",
        args.out.display(),
        sources.len(),
        args.views
    );
    Ok(())
}
