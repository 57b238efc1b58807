//! `cargo xtask eval RUN_DIR`: the whole evaluation of a training run, as a markdown report
//! with its pictures in `RUN_DIR/evaluation/`.
//!
//! Steps, each through the release `contrastive` binary: `eval` (the model's figures) and
//! `eval --raw-pixels` (the baseline it must beat); for image runs also `embed` (the
//! embedding store), `cluster` (the cluster grid, PCA and t-SNE maps) and `search` for a
//! few held-out images (contact sheets). The report puts the figures beside the baseline,
//! shows the training curves the run drew, and says how long each step took.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::libtorch;

/// What `cargo xtask eval` does.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The run directory (made by `contrastive train` / `cargo xtask train`).
    pub run: PathBuf,
    /// Held-out images searched for the contact sheets (image runs).
    #[arg(long, default_value_t = 3)]
    pub queries: usize,
    /// Skip the raw-pixel baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// The figures of an evaluation, in report order: JSON key, label, shown as a percentage.
const IMAGE_FIGURES: [(&str, &str, bool); 7] = [
    ("knn_top1", "kNN top-1", true),
    ("linear_probe_top1", "linear-probe top-1", true),
    ("precision_at_1", "precision@1", true),
    ("map_at_r", "MAP@R", false),
    ("kmeans_nmi", "k-means NMI", false),
    ("kmeans_ari", "k-means ARI", false),
    ("kmeans_accuracy", "k-means accuracy", true),
];

/// The video figures (see `contrastive eval` on a video run).
const VIDEO_FIGURES: [(&str, &str, bool); 5] = [
    ("video_recall_at_1", "same-video recall@1", true),
    ("video_recall_at_10", "same-video recall@10", true),
    ("scene_recall_at_1", "same-scene recall@1", true),
    ("clip_recall_at_1", "clip-to-video recall@1", true),
    ("video_nmi", "video k-means NMI", false),
];

/// One step of the evaluation and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The command, as a user would type it.
    pub command: String,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// A held-out query and what `contrastive search` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query's id (`fashion-mnist:test:97`) or file.
    pub id: String,
    /// The contact sheet, relative to the report.
    pub sheet: String,
    /// The ranked neighbours as printed.
    pub listing: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The run directory as given.
    pub run: String,
    /// `eval.json` of the model.
    pub model: Value,
    /// `eval-raw-pixels.json`, when measured.
    pub baseline: Option<Value>,
    /// `report.json` of the training run, when present.
    pub training: Option<Value>,
    /// Pictures beside the report, relative to it, with their captions.
    pub pictures: Vec<(String, String)>,
    /// Searches of held-out images.
    pub queries: Vec<Query>,
    /// The steps run.
    pub steps: Vec<Step>,
}

/// Runs the evaluation of `options.run` and writes `RUN/evaluation/report.md`.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let run = &options.run;
    let config_text = std::fs::read_to_string(run.join("config.toml")).with_context(|| {
        format!(
            "{} is not a run directory (no config.toml); train one with `cargo xtask train`",
            run.display()
        )
    })?;
    if !run.join("model.safetensors").is_file() {
        bail!(
            "{} has no model.safetensors: the run has not finished (resume it with \
             `contrastive train --resume {}`)",
            run.display(),
            run.display()
        );
    }
    libtorch::setup(root)?;
    crate::run_command(
        root,
        "cargo",
        &["build", "--release", "--quiet", "-p", "contrastive-cli"],
    )?;
    let binary = root.join("target").join("release").join("contrastive");
    let out = run.join("evaluation");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let run_arg = run.display().to_string();
    let mut inputs = Inputs {
        run: run_arg.clone(),
        ..Inputs::default()
    };
    let mut step = |args: &[&str]| -> Result<String> {
        let start = Instant::now();
        let printed = contrastive(root, &binary, args)?;
        inputs.steps.push(Step {
            command: format!("contrastive {}", args.join(" ")),
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(printed)
    };
    step(&["eval", &run_arg])?;
    if !options.no_baseline {
        step(&["eval", &run_arg, "--raw-pixels"])?;
    }
    let model = read_json(&run.join("eval.json"))?;
    let video = model.get("video_recall_at_1").is_some_and(|v| !v.is_null());
    let mut pictures = Vec::new();
    let mut queries = Vec::new();
    if !video {
        step(&["embed", &run_arg])?;
        let grid = out.join("clusters.png").display().to_string();
        for method in ["pca", "tsne"] {
            let map = out.join(format!("map-{method}.png")).display().to_string();
            step(&[
                "cluster",
                "--run",
                &run_arg,
                "--grid",
                &grid,
                "--map",
                &map,
                "--map-method",
                method,
            ])?;
        }
        pictures.push((
            "clusters.png".into(),
            "k-means clusters (images nearest each centre)".into(),
        ));
        pictures.push((
            "map-pca.png".into(),
            "the embeddings on their two principal components".into(),
        ));
        pictures.push((
            "map-tsne.png".into(),
            "a t-SNE map of the embeddings".into(),
        ));
        for (i, id) in query_ids(&config_text, options.queries)?
            .into_iter()
            .enumerate()
        {
            let sheet = format!("search-{i}.png");
            let sheet_path = out.join(&sheet).display().to_string();
            let listing = step(&[
                "search",
                "--run",
                &run_arg,
                "--query-id",
                &id,
                "-k",
                "8",
                "--sheet",
                &sheet_path,
            ])?;
            queries.push(Query { id, sheet, listing });
        }
    }
    for (file, caption) in [
        ("loss.png", "training loss"),
        ("knn.png", "kNN top-1 on the held-out split per epoch"),
        ("recall.png", "same-video recall per epoch"),
    ] {
        if run.join(file).is_file() {
            pictures.push((format!("../{file}"), caption.into()));
        }
    }
    let baseline = if options.no_baseline {
        None
    } else {
        Some(read_json(&run.join("eval-raw-pixels.json"))?)
    };
    let training = read_json(&run.join("report.json")).ok();
    let inputs = Inputs {
        model,
        baseline,
        training,
        pictures,
        queries,
        ..inputs
    };
    let path = out.join("report.md");
    std::fs::write(&path, render(&inputs))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("eval: report in {}", path.display());
    Ok(())
}

/// Runs the `contrastive` binary, echoing and returning what it prints.
fn contrastive(root: &Path, binary: &Path, args: &[&str]) -> Result<String> {
    println!("$ contrastive {}", args.join(" "));
    let out = Command::new(binary)
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{printed}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`contrastive {}` failed ({})", args.join(" "), out.status);
    }
    Ok(printed)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Ids of `n` held-out items of a standard dataset, spread through its test split (every
/// 997th item, so several classes show up); empty for folder and video data, whose test
/// items are files the store does not name this way.
pub fn query_ids(config_text: &str, n: usize) -> Result<Vec<String>> {
    let table: toml::Table = config_text
        .parse()
        .context("config.toml is not valid TOML")?;
    let dataset = table
        .get("data")
        .and_then(|d| d.get("dataset"))
        .and_then(|d| d.as_str())
        .context("config.toml has no data.dataset")?;
    Ok(match dataset {
        "folder" | "video" | "video-demo" => Vec::new(),
        name => (0..n).map(|i| format!("{name}:test:{}", i * 997)).collect(),
    })
}

/// The markdown report.
pub fn render(inputs: &Inputs) -> String {
    let video = inputs
        .model
        .get("video_recall_at_1")
        .is_some_and(|v| !v.is_null());
    let figures: &[(&str, &str, bool)] = if video {
        &VIDEO_FIGURES
    } else {
        &IMAGE_FIGURES
    };
    let mut md = format!(
        "# Evaluation of `{}`\n\nMade by `cargo xtask eval {}`. Figures on the run's held-out \
         split; the raw-pixel column evaluates the normalised pixels themselves, the baseline \
         a model has to beat.\n\n",
        inputs.run, inputs.run
    );
    if let Some(t) = &inputs.training {
        let num = |key: &str| t.get(key).and_then(Value::as_f64);
        md.push_str("## Training\n\n| | |\n|---|---|\n");
        if let Some(steps) = num("steps") {
            md.push_str(&format!("| steps | {steps:.0} |\n"));
        }
        if let Some(epochs) = num("epochs_done") {
            md.push_str(&format!("| epochs | {epochs:.0} |\n"));
        }
        if let Some(s) = num("train_s") {
            md.push_str(&format!("| training time | {s:.0} s |\n"));
        }
        if let Some(v) = num("views_per_s") {
            md.push_str(&format!("| throughput | {v:.0} views/s |\n"));
        }
        md.push('\n');
    }
    md.push_str(
        "## Figures\n\n| figure | model | raw pixels | model - pixels |\n|---|---|---|---|\n",
    );
    for &(key, label, percent) in figures {
        let value = |v: Option<&Value>| v.and_then(|v| v.get(key)).and_then(Value::as_f64);
        let model = value(Some(&inputs.model));
        let pixels = value(inputs.baseline.as_ref());
        let show = |v: Option<f64>| match v {
            Some(v) if percent => format!("{:.2} %", v * 100.0),
            Some(v) => format!("{v:.4}"),
            None => "n/a".into(),
        };
        let difference = match (model, pixels) {
            (Some(m), Some(p)) if percent => format!("{:+.2} points", (m - p) * 100.0),
            (Some(m), Some(p)) => format!("{:+.4}", m - p),
            _ => String::new(),
        };
        md.push_str(&format!(
            "| {label} | {} | {} | {difference} |\n",
            show(model),
            show(pixels)
        ));
    }
    if !inputs.pictures.is_empty() {
        md.push_str("\n## Pictures\n");
        for (file, caption) in &inputs.pictures {
            md.push_str(&format!("\n{caption}:\n\n![{caption}]({file})\n"));
        }
    }
    if !inputs.queries.is_empty() {
        md.push_str("\n## Searches of held-out images\n");
        for q in &inputs.queries {
            md.push_str(&format!(
                "\n`{}` against the training images:\n\n![search {}]({})\n\n```\n{}```\n",
                q.id, q.id, q.sheet, q.listing
            ));
        }
    }
    md.push_str("\n## Steps\n\n| command | time |\n|---|---|\n");
    for s in &inputs.steps {
        md.push_str(&format!("| `{}` | {:.1} s |\n", s.command, s.seconds));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_sets_the_model_beside_the_pixels() {
        let inputs = Inputs {
            run: "runs/x".into(),
            model: serde_json::json!({"knn_top1": 0.8, "map_at_r": 0.33, "kmeans_nmi": null}),
            baseline: Some(serde_json::json!({"knn_top1": 0.85, "map_at_r": 0.3})),
            training: Some(serde_json::json!({"steps": 10, "train_s": 61.2})),
            pictures: vec![("map.png".into(), "the map".into())],
            queries: vec![Query {
                id: "fashion-mnist:test:0".into(),
                sheet: "search-0.png".into(),
                listing: "rank  score    id\n".into(),
            }],
            steps: vec![Step {
                command: "contrastive eval runs/x".into(),
                seconds: 12.34,
            }],
        };
        let md = render(&inputs);
        assert!(
            md.contains("| kNN top-1 | 80.00 % | 85.00 % | -5.00 points |"),
            "{md}"
        );
        assert!(md.contains("| MAP@R | 0.3300 | 0.3000 | +0.0300 |"), "{md}");
        assert!(md.contains("| k-means NMI | n/a | n/a |  |"), "{md}");
        assert!(md.contains("| steps | 10 |") && md.contains("| training time | 61 s |"));
        assert!(md.contains("![the map](map.png)"));
        assert!(md.contains("![search fashion-mnist:test:0](search-0.png)"));
        assert!(md.contains("| `contrastive eval runs/x` | 12.3 s |"));
        let video = Inputs {
            model: serde_json::json!({"video_recall_at_1": 0.69}),
            ..inputs
        };
        assert!(render(&video).contains("| same-video recall@1 | 69.00 % |"));
    }

    #[test]
    fn queries_come_from_standard_test_splits_only() {
        let fmnist = "[data]\ndataset = \"fashion-mnist\"\n";
        assert_eq!(
            query_ids(fmnist, 2).unwrap(),
            ["fashion-mnist:test:0", "fashion-mnist:test:997"]
        );
        assert!(
            query_ids("[data]\ndataset = \"folder\"\n", 2)
                .unwrap()
                .is_empty()
        );
        assert!(query_ids("[run]\n", 2).is_err());
    }

    #[test]
    fn a_folder_without_a_run_is_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            run: dir.path().to_path_buf(),
            queries: 1,
            no_baseline: true,
        };
        let err = run(dir.path(), &options).unwrap_err().to_string();
        assert!(err.contains("not a run directory"), "{err}");
        std::fs::write(dir.path().join("config.toml"), "[data]\n").unwrap();
        let err = run(dir.path(), &options).unwrap_err().to_string();
        assert!(err.contains("no model.safetensors"), "{err}");
    }
}
