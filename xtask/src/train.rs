//! `cargo xtask train`: everything a first run needs, then the run itself: libtorch
//! (setup), the dataset (download), a release build of the `contrastive` binary, and
//! `contrastive train --config <config> <overrides>`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{download, libtorch, run_command};

/// The config `cargo xtask train` runs when none is given (W1).
pub const DEFAULT_CONFIG: &str = "configs/fmnist-simclr.toml";

/// The standard dataset a config trains on, unless it names its own folder; for the video
/// demo set, Fashion-MNIST (the set is generated from it on first use).
pub fn dataset_to_fetch(config_text: &str) -> Result<Option<String>> {
    let table: toml::Table = config_text
        .parse()
        .context("the config is not valid TOML")?;
    let data = table.get("data").and_then(|d| d.as_table());
    let dataset = data
        .and_then(|d| d.get("dataset"))
        .and_then(|v| v.as_str())
        .context("the config has no data.dataset")?;
    let has_dir = data.is_some_and(|d| d.contains_key("dir"));
    Ok(match dataset {
        "video-demo" => Some("fashion-mnist".to_owned()),
        "folder" | "video" => None,
        _ => (!has_dir).then(|| dataset.to_owned()),
    })
}

/// Runs the whole chain; `args` go to `contrastive train` unchanged.
pub fn run(root: &Path, config: Option<PathBuf>, args: &[String]) -> Result<()> {
    let config = config.unwrap_or_else(|| root.join(DEFAULT_CONFIG));
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    libtorch::setup(root)?;
    let overridden_dir = args.iter().any(|a| a == "--data-dir");
    if let Some(dataset) = dataset_to_fetch(&text)?.filter(|_| !overridden_dir) {
        download::run(&dataset, None)?;
    }
    run_command(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "--quiet",
            "--package",
            "contrastive-cli",
        ],
    )?;
    let binary = root.join("target").join("release").join("contrastive");
    let config = config.display().to_string();
    let mut full: Vec<&str> = vec!["train", "--config", &config];
    full.extend(args.iter().map(String::as_str));
    run_command(root, &binary.display().to_string(), &full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_datasets_are_fetched_and_folders_are_not() {
        let standard = "[data]\ndataset = \"fashion-mnist\"\nbatch_size = 4";
        assert_eq!(
            dataset_to_fetch(standard).unwrap().as_deref(),
            Some("fashion-mnist")
        );
        let own_dir = "[data]\ndataset = \"mnist\"\ndir = \"/data/mnist\"";
        assert_eq!(dataset_to_fetch(own_dir).unwrap(), None);
        let folder = "[data]\ndataset = \"folder\"\ndir = \"x\"";
        assert_eq!(dataset_to_fetch(folder).unwrap(), None);
        let videos = "[data]\ndataset = \"video\"\ndir = \"v\"";
        assert_eq!(dataset_to_fetch(videos).unwrap(), None);
        let demo = "[data]\ndataset = \"video-demo\"\ndir = \"d\"";
        assert_eq!(
            dataset_to_fetch(demo).unwrap().as_deref(),
            Some("fashion-mnist")
        );
        assert!(dataset_to_fetch("[data]\n").is_err());
        assert!(dataset_to_fetch("not toml [").is_err());
    }

    #[test]
    fn the_default_config_exists_and_names_its_dataset() {
        let root = crate::workspace_root();
        let text = std::fs::read_to_string(root.join(DEFAULT_CONFIG)).unwrap();
        assert_eq!(
            dataset_to_fetch(&text).unwrap().as_deref(),
            Some("fashion-mnist")
        );
    }
}
