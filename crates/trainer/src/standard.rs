//! The standard datasets: where their files are and their published statistics.

use std::path::PathBuf;

use contrastive_data::download;

use crate::config::DataConfig;
use crate::{Error, Result};

/// Published channel statistics of the standard sets.
pub(crate) fn standard_stats(name: &str) -> Option<(Vec<f32>, Vec<f32>)> {
    match name {
        // W1 in shared/benchmarks.md.
        "fashion-mnist" => Some((vec![0.2860], vec![0.3530])),
        "mnist" => Some((vec![0.1307], vec![0.3081])),
        "cifar10" => Some((vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])),
        "cifar100" => Some((vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762])),
        _ => None,
    }
}

/// The folder of a standard dataset: `data.dir`, else a verified copy found where
/// `cargo xtask download` puts it (or a system package's folder).
pub(crate) fn standard_dir(config: &DataConfig) -> Result<PathBuf> {
    if let Some(dir) = &config.dir {
        return Ok(dir.clone());
    }
    find_standard(config.dataset.as_str())
}

/// A verified copy of the standard dataset `name` where `cargo xtask download` puts it (or
/// a system package's folder).
pub(crate) fn find_standard(name: &str) -> Result<PathBuf> {
    let spec = download::dataset_spec(name)?;
    let root = download::data_root(&|k| std::env::var_os(k));
    let found = match root.as_deref() {
        Some(root) => download::find_existing(&spec, root)?,
        None => None,
    };
    found.map(|(dir, _)| dir).ok_or_else(|| Error::MissingData {
        message: format!(
            "{name} is not downloaded (looked in {} and {}); run `cargo xtask download {name}` \
                 or set data.dir",
            root.map_or_else(
                || "the data folder".into(),
                |r| r.join(name).display().to_string()
            ),
            spec.local_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    })
}
