//! Checkpoints: one `.safetensors` file holding the model, the momentum encoder, the
//! optimiser, the MoCo queue and the position in the run, replaced atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use contrastive_tensor::{
    SafetensorsFile, Tensor, first_non_finite, nn::VarStore, save_safetensors,
};
use serde::{Deserialize, Serialize};

use crate::budget::BudgetPlan;
use crate::config::{RunConfig, run_section};
use crate::{Error, Result};

/// Where a run stands; saved in every checkpoint's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Steps of that epoch already done.
    pub step_in_epoch: u64,
    /// Steps done in all.
    pub step: u64,
    /// Training seconds so far (resumed runs add to it).
    pub elapsed_s: f64,
    /// Sum of the losses of the epoch in progress (its mean is logged at the epoch's end,
    /// also when the run was resumed in between).
    #[serde(default)]
    pub epoch_loss_sum: f64,
    /// Training seconds of the epoch in progress.
    #[serde(default)]
    pub epoch_train_s: f64,
    /// How many steps a run with `run.time_budget` takes, as its first steps planned it and
    /// its epoch ends since revised it (absent before the plan, and without a budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetPlan>,
}

/// Metadata key of the [`Position`].
const POSITION_KEY: &str = "contrastive.position";
/// Metadata key of the run's config (TOML).
const CONFIG_KEY: &str = "contrastive.config";

/// The checkpoint file of a run directory.
pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints").join("last.safetensors")
}

/// Removes temporary files a killed process left beside the checkpoint (a save writes
/// `.last.safetensors.tmp-*` and renames it; a kill before the rename leaves it behind).
/// Only the holder of the run directory's [`RunLock`] may call it: another process's
/// temporary file may be about to be renamed.
pub(crate) fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let dir = run_dir.join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".last.safetensors.tmp-") {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// The checkpoint a stopped run can resume from, for messages: `path`, or `none yet`.
pub(crate) fn last_good(path: &Path) -> String {
    if path.is_file() {
        path.display().to_string()
    } else {
        "none yet".into()
    }
}

/// Writes `tensors` and `position` to `path` atomically (an interrupted write leaves the
/// previous checkpoint whole). A state holding NaN or infinity is never written: the
/// error names the tensor and the file on disk stays the last finite one.
pub(crate) fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    position: &Position,
    config_toml: &str,
) -> Result<()> {
    let named = tensors.iter().map(|(n, t)| (n.as_str(), t));
    if let Some((tensor, count)) = first_non_finite(named)? {
        return Err(Error::NonFiniteState {
            step: position.step,
            tensor,
            count,
            checkpoint: last_good(path),
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let metadata = BTreeMap::from([
        (
            POSITION_KEY.to_owned(),
            serde_json::to_string(position).expect("a position is plain data"),
        ),
        (CONFIG_KEY.to_owned(), config_toml.to_owned()),
    ]);
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Ok(save_safetensors(path, &named, &metadata)?)
}

/// The `[run]` settings the run that wrote the checkpoint at `path` had (its precision and
/// layout among them), read from the file's metadata without reading its tensors.
pub(crate) fn saved_run_config(path: &Path) -> Result<RunConfig> {
    let file = SafetensorsFile::map(path)?;
    let not_ours = |why: String| {
        Error::Run(format!(
            "{} is not a training checkpoint of this version ({why})",
            path.display()
        ))
    };
    let text = file
        .metadata
        .get(CONFIG_KEY)
        .ok_or_else(|| not_ours(format!("no {CONFIG_KEY:?} metadata")))?;
    run_section(text).map_err(|e| not_ours(e.to_string()))
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every tensor by name.
    pub tensors: HashMap<String, Tensor>,
    /// Where the run stood.
    pub position: Position,
}

impl Checkpoint {
    /// Reads the checkpoint at `path`; a damaged file, or one holding NaN or infinity
    /// anywhere, is an error naming the file (and the tensor).
    pub fn read(path: &Path) -> Result<Self> {
        let file = SafetensorsFile::read(path)?;
        let named = file.tensors.iter().map(|(n, t)| (n.as_str(), t));
        if let Some((name, count)) = first_non_finite(named)? {
            return Err(contrastive_tensor::Error::NonFiniteTensor {
                path: path.to_path_buf(),
                name,
                count,
            }
            .into());
        }
        let position = file
            .metadata
            .get(POSITION_KEY)
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| {
                Error::Run(format!(
                    "{} is not a training checkpoint (no {POSITION_KEY:?} metadata)",
                    path.display()
                ))
            })?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors: file.tensors.into_iter().collect(),
            position,
        })
    }

    /// The tensor `name`, which must have the shape and element type of `like`.
    pub fn tensor(&self, name: &str, like: &Tensor) -> Result<&Tensor> {
        let saved = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Run(format!("{} lacks {name}", self.path.display())))?;
        if saved.size() != like.size() || saved.kind() != like.kind() {
            return Err(Error::Run(format!(
                "{}: {name} is {:?} {:?}, this run needs {:?} {:?}",
                self.path.display(),
                saved.kind(),
                saved.size(),
                like.kind(),
                like.size()
            )));
        }
        Ok(saved)
    }

    /// Copies the tensors named `prefix` + a variable name of `vs` into `vs`, strictly
    /// (every variable present, same shapes and kinds, nothing else under the prefix).
    pub fn restore(&self, prefix: &str, vs: &VarStore) -> Result<()> {
        let file = SafetensorsFile {
            path: self.path.clone(),
            tensors: self
                .tensors
                .iter()
                .filter_map(|(name, t)| {
                    name.strip_prefix(prefix)
                        .map(|rest| (rest.to_owned(), t.shallow_clone()))
                })
                .collect(),
            metadata: Default::default(),
        };
        Ok(file.copy_into(&vs.variables())?)
    }
}
