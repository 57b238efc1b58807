//! `contrastive eval`: the full evaluation of a trained model on its run's data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use contrastive_trainer::{
    Evaluation, PixelComparison, TrainConfig, evaluate_raw_pixels, evaluate_saved_against_pixels,
};

/// Arguments of `contrastive eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The run directory (its config.toml names the data and settings).
    run: PathBuf,
    /// The weights to evaluate (default: RUN/model.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Override any config key: --set section.key=value (repeatable), e.g. run.device.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Evaluate the normalised pixels themselves instead of a model (the baseline a model
    /// has to beat); writes RUN/eval-raw-pixels.json.
    #[arg(long, conflicts_with = "model")]
    raw_pixels: bool,
}

/// A run directory's config (with `overrides`) and the model to use: `model`, else the
/// run's `model.safetensors`.
pub fn open_run(
    run: &Path,
    overrides: &[String],
    model: Option<PathBuf>,
) -> Result<(TrainConfig, PathBuf)> {
    let config_path = run.join("config.toml");
    let config = TrainConfig::load(&config_path, overrides)
        .with_context(|| format!("reading {}", config_path.display()))?;
    Ok((
        config,
        model.unwrap_or_else(|| run.join("model.safetensors")),
    ))
}

/// Runs `contrastive eval`: prints the figures beside the raw pixels' and writes RUN/eval.json
/// and RUN/eval-raw-pixels.json (with --raw-pixels, only the latter).
pub fn run(args: EvalArgs) -> Result<()> {
    let (config, model) = open_run(&args.run, &args.set, args.model)?;
    let write = |file: &str, results: &Evaluation| -> Result<()> {
        let path = args.run.join(file);
        let json = serde_json::to_string_pretty(results).expect("an evaluation serialises");
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("written        {}", path.display());
        Ok(())
    };
    if args.raw_pixels {
        let results = evaluate_raw_pixels(&config).context("evaluating raw pixels")?;
        print_evaluation(&results, None);
        return write("eval-raw-pixels.json", &results);
    }
    let (results, pixels) = evaluate_saved_against_pixels(&config, &model)
        .with_context(|| format!("evaluating {}", model.display()))?;
    print_evaluation(&results, pixels.as_ref());
    write("eval.json", &results)?;
    if let Some(pixels) = &pixels {
        write("eval-raw-pixels.json", &pixels.raw_pixels)?;
    }
    Ok(())
}

/// One figure of an evaluation.
type Figure = fn(&Evaluation) -> Option<f64>;

/// The figures of an evaluation, one per line: the video figures for video data, the
/// image figures otherwise, each beside the raw pixels' when `pixels` has them, and a
/// plain line when the model does worse than the pixels.
pub fn print_evaluation(e: &Evaluation, pixels: Option<&PixelComparison>) {
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.2} %", v * 100.0));
    let num = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
    if e.video_recall_at_1.is_some() || e.video_nmi.is_some() {
        println!(
            "same video     recall@1 {}, recall@10 {} (own scene left out)",
            pct(e.video_recall_at_1),
            pct(e.video_recall_at_10)
        );
        println!("same scene     recall@1 {}", pct(e.scene_recall_at_1));
        println!("clip -> video  recall@1 {}", pct(e.clip_recall_at_1));
        println!("video k-means  NMI {}", num(e.video_nmi));
        return;
    }
    if *e == Evaluation::default() {
        println!(
            "no figures: nothing to measure on (the data has no labeled held-out split: set \
             data.test_dir), or the final evaluation is off (eval.final = false)"
        );
        return;
    }
    let raw = pixels.map(|p| &p.raw_pixels);
    let beside = |shown: String, value: &dyn Fn(&Evaluation) -> String| match raw {
        Some(raw) => format!("{shown:<10} raw pixels {}", value(raw)),
        None => shown,
    };
    // (label, figure, shown as a percentage)
    let rows: [(&str, Figure, bool); 4] = [
        ("kNN top-1     ", |x| x.knn_top1, true),
        ("linear probe  ", |x| x.linear_probe_top1, true),
        ("precision@1   ", |x| x.precision_at_1, true),
        ("MAP@R         ", |x| x.map_at_r, false),
    ];
    for (name, figure, percent) in rows {
        let show = |x: &Evaluation| {
            if percent {
                pct(figure(x))
            } else {
                num(figure(x))
            }
        };
        println!("{name} {}", beside(show(e), &show));
    }
    println!(
        "k-means        NMI {}, ARI {}, accuracy {}",
        num(e.kmeans_nmi),
        num(e.kmeans_ari),
        pct(e.kmeans_accuracy)
    );
    if let Some(raw) = raw {
        println!(
            "  raw pixels   NMI {}, ARI {}, accuracy {}",
            num(raw.kmeans_nmi),
            num(raw.kmeans_ari),
            pct(raw.kmeans_accuracy)
        );
    }
    match pixels.and_then(PixelComparison::warning) {
        Some(warning) => println!("warning: {warning}"),
        None if pixels.is_some() => {
            println!("the embedding is no worse than raw pixels on any figure")
        }
        None => {}
    }
}
