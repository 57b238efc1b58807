//! `run.precision = "auto"` and `run.channels_last = "auto"` decided by measurement.
//!
//! Which precision and memory layout train fastest depends on the machine, not on what its
//! CPU flags promise: on an AMD EPYC bf16 autocast doubles the small CNN's rate, on an Intel
//! Xeon with AVX512-BF16 but no AMX it is slower than fp32 (docs/benchmarks.md). So a run
//! that leaves either setting to `auto` times a few forward and backward passes of a fresh
//! copy of its own model at each candidate (fp32 or bf16, NCHW or channels-last), in
//! interleaved rounds, and keeps the fastest. A lower precision must beat the best fp32
//! candidate by [`LOW_PRECISION_MARGIN`] to be chosen: its rounding is only worth a real
//! gain. The decision is cached under the cache root (`numerics/<key>.json`), keyed by the
//! device (CPU model and flags, or GPU model), libtorch, the thread count, the model's
//! config, the input size and the trial batch, so the next run with the same key measures
//! nothing. A lock on the cache folder makes concurrent runs wait for the one measurement
//! instead of timing each other.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Instant;

use contrastive_data::download::cache_root;
use contrastive_models::{EmbeddingModel, ModelConfig};
use contrastive_tensor::{
    Device, Kind, LIBTORCH_VERSION, ModuleT, Precision, Tensor, autocast, nn::VarStore, seeded,
    synchronize, threads, to_channels_last, var_store_to_channels_last, write_atomically,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A precision and layout a run can train in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numerics {
    /// Autocast precision.
    pub precision: Precision,
    /// The channels-last memory layout.
    pub channels_last: bool,
}

impl std::fmt::Display for Numerics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layout = if self.channels_last {
            "channels-last"
        } else {
            "NCHW"
        };
        write!(f, "{} {layout}", self.precision)
    }
}

/// One candidate's measured rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// `fp32`, `bf16` or `fp16`.
    pub precision: String,
    /// Whether the layout was channels-last.
    pub channels_last: bool,
    /// Image-views per second of forward and backward (median step of the rounds).
    pub views_per_s: f64,
}

/// What [`choose_numerics`] decided, and from what.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericsChoice {
    /// The precision and layout chosen.
    pub chosen: Numerics,
    /// Every candidate's rate, fastest first (empty when there was nothing to choose).
    pub trials: Vec<Trial>,
    /// Seconds the measurement took (0 when read from the cache).
    pub measured_s: f64,
    /// The cache file the decision was read from, when it was.
    pub cached: Option<PathBuf>,
}

impl NumericsChoice {
    /// One line for the run's output: the choice, the rates and where they came from.
    pub fn describe(&self) -> String {
        let rates: Vec<String> = self
            .trials
            .iter()
            .map(|t| {
                let layout = if t.channels_last {
                    " + channels-last"
                } else {
                    ""
                };
                format!("{}{layout} {:.0}", t.precision, t.views_per_s)
            })
            .collect();
        let source = match &self.cached {
            Some(path) => format!("cached in {}", path.display()),
            None => format!("measured in {:.1} s", self.measured_s),
        };
        format!(
            "numerics: {} (views/s of forward and backward: {}; {source})",
            self.chosen,
            rates.join(", ")
        )
    }
}

/// A lower precision is chosen only when it is this much faster than the best fp32
/// candidate.
pub const LOW_PRECISION_MARGIN: f64 = 1.05;

/// Stop timing after this many seconds, once every candidate has two timed rounds.
const BUDGET_S: f64 = 3.0;
/// Timed rounds at most (each times one step of every candidate).
const MAX_ROUNDS: usize = 5;

/// Decides the run's numerics: `precision` and `channels_last` are the run's explicit
/// settings (`None`: auto). Nothing is measured when both are set, when only one candidate
/// is left, or on devices other than the CPU and CUDA (there `auto` is fp32 and
/// channels-last); otherwise each candidate is timed on `[trial views, C, side, side]`
/// batches of a fresh copy of `config`'s model (the run's own model and random streams
/// are untouched), or the cached decision for the same key is used.
pub fn choose_numerics(
    config: ModelConfig,
    side: i64,
    device: Device,
    precision: Option<Precision>,
    channels_last: Option<bool>,
    step_views: u64,
) -> Result<NumericsChoice> {
    let precisions = match (precision, device) {
        (Some(p), _) => vec![p],
        (None, Device::Cpu | Device::Cuda(_)) => vec![Precision::Fp32, Precision::Bf16],
        (None, _) => vec![Precision::Fp32],
    };
    let layouts = match (channels_last, device) {
        (Some(c), _) => vec![c],
        (None, Device::Cpu | Device::Cuda(_)) => vec![false, true],
        (None, _) => vec![true],
    };
    let candidates: Vec<Numerics> = precisions
        .iter()
        .flat_map(|&precision| {
            layouts.iter().map(move |&channels_last| Numerics {
                precision,
                channels_last,
            })
        })
        .collect();
    if let [only] = candidates.as_slice() {
        return Ok(NumericsChoice {
            chosen: *only,
            trials: Vec::new(),
            measured_s: 0.0,
            cached: None,
        });
    }
    let views = trial_views(&config, side, step_views);
    let key = CacheKey {
        device: device_identity(device),
        libtorch: LIBTORCH_VERSION.into(),
        threads: threads(),
        model: config,
        side,
        views,
        candidates: candidates.iter().map(ToString::to_string).collect(),
    };
    let Some(root) = cache_root(&|k| std::env::var_os(k)) else {
        return measure(&candidates, config, side, device, views);
    };
    let dir = root.join("numerics");
    // Runs that start together wait for one measurement rather than time each other.
    let _lock = lock_folder(&dir);
    let path = dir.join(format!("{}.json", key.digest()));
    if let Some(choice) = read_cached(&path, &key) {
        return Ok(choice);
    }
    let choice = measure(&candidates, config, side, device, views)?;
    let entry = CacheEntry {
        key,
        precision: choice.chosen.precision.to_string(),
        channels_last: choice.chosen.channels_last,
        trials: choice.trials.clone(),
        measured_s: choice.measured_s,
    };
    let text = serde_json::to_string_pretty(&entry).expect("a cache entry is plain data");
    if let Err(e) = write_atomically(&path, text.as_bytes()) {
        tracing::warn!(
            "could not cache the numerics decision in {}: {e}",
            path.display()
        );
    }
    Ok(choice)
}

/// Image-views of a trial step: about 64 Ki input values (64 views of 28 x 28 x 1), 8 to 64
/// of them, and never more than the run's own step (at least 2).
fn trial_views(config: &ModelConfig, side: i64, step_views: u64) -> i64 {
    let per_view = (config.in_channels * side * side).max(1);
    let step = i64::try_from(step_views).unwrap_or(i64::MAX).max(2);
    (65_536 / per_view).clamp(8, 64).min(step)
}

/// Times every candidate: a warm-up round, then rounds of one step each, in turn, until
/// [`MAX_ROUNDS`] or, after two, [`BUDGET_S`]; the fastest median wins (see
/// [`LOW_PRECISION_MARGIN`]).
fn measure(
    candidates: &[Numerics],
    config: ModelConfig,
    side: i64,
    device: Device,
    views: i64,
) -> Result<NumericsChoice> {
    let start = Instant::now();
    let input = seeded(0, || {
        Tensor::randn(
            [views, config.in_channels, side, side],
            (Kind::Float, device),
        )
    });
    // One copy of the model per layout (precisions share the fp32 weights).
    let mut models = Vec::new();
    for channels_last in [false, true] {
        if candidates.iter().any(|c| c.channels_last == channels_last) {
            let vs = VarStore::new(device);
            let model = seeded(0, || EmbeddingModel::new(&vs.root(), config));
            let x = if channels_last {
                var_store_to_channels_last(&vs)?;
                to_channels_last(&input)?
            } else {
                input.shallow_clone()
            };
            models.push((channels_last, vs, model, x));
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    let mut failed: Vec<Option<Error>> = (0..candidates.len()).map(|_| None).collect();
    for round in 0..=MAX_ROUNDS {
        for (i, candidate) in candidates.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let (_, _, model, x) = models
                .iter()
                .find(|m| m.0 == candidate.channels_last)
                .expect("a model for every layout");
            let began = Instant::now();
            match trial_step(model, x, device, candidate.precision) {
                Ok(()) if round > 0 => times[i].push(began.elapsed().as_secs_f64()),
                Ok(()) => {}
                Err(e) => failed[i] = Some(e),
            }
        }
        if round >= 2 && start.elapsed().as_secs_f64() > BUDGET_S {
            break;
        }
    }
    let mut trials: Vec<(Numerics, Trial)> = candidates
        .iter()
        .zip(&mut times)
        .filter(|(_, t)| !t.is_empty())
        .map(|(c, t)| {
            t.sort_by(f64::total_cmp);
            let median = t[t.len() / 2];
            let trial = Trial {
                precision: c.precision.to_string(),
                channels_last: c.channels_last,
                views_per_s: views as f64 / median.max(1e-9),
            };
            (*c, trial)
        })
        .collect();
    if trials.is_empty() {
        let first = failed.into_iter().flatten().next();
        return Err(first.unwrap_or_else(|| Error::Run("no numerics candidate ran".into())));
    }
    trials.sort_by(|a, b| b.1.views_per_s.total_cmp(&a.1.views_per_s));
    let best_fp32 = trials
        .iter()
        .find(|(c, _)| c.precision == Precision::Fp32)
        .map(|(_, t)| t.views_per_s);
    let chosen = trials
        .iter()
        .find(|(c, t)| {
            c.precision == Precision::Fp32
                || best_fp32.is_none_or(|fp32| t.views_per_s >= LOW_PRECISION_MARGIN * fp32)
        })
        .map_or(trials[0].0, |(c, _)| *c);
    Ok(NumericsChoice {
        chosen,
        trials: trials.into_iter().map(|(_, t)| t).collect(),
        measured_s: start.elapsed().as_secs_f64(),
        cached: None,
    })
}

/// One forward and backward pass of `model` on `x` in `precision`, waited for.
pub(crate) fn trial_step(
    model: &EmbeddingModel,
    x: &Tensor,
    device: Device,
    precision: Precision,
) -> Result<()> {
    let z = {
        let _mixed = autocast(device, precision)?;
        model.forward_t(x, true).to_kind(Kind::Float)
    };
    z.square().sum(Kind::Float).f_backward()?;
    synchronize(device);
    Ok(())
}

/// What a cached decision is valid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    device: String,
    libtorch: String,
    threads: usize,
    model: ModelConfig,
    side: i64,
    views: i64,
    candidates: Vec<String>,
}

impl CacheKey {
    /// The file name of the key: the first 16 bytes of its JSON's SHA-256, in hex.
    fn digest(&self) -> String {
        let json = serde_json::to_string(self).expect("a cache key is plain data");
        Sha256::digest(json.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A cached decision, as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    key: CacheKey,
    precision: String,
    channels_last: bool,
    trials: Vec<Trial>,
    measured_s: f64,
}

/// The decision cached at `path` for `key`; `None` when absent, damaged or for another key
/// (it is then measured again and rewritten).
fn read_cached(path: &Path, key: &CacheKey) -> Option<NumericsChoice> {
    let entry: CacheEntry = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if &entry.key != key {
        return None;
    }
    Some(NumericsChoice {
        chosen: Numerics {
            precision: entry.precision.parse().ok()?,
            channels_last: entry.channels_last,
        },
        trials: entry.trials,
        measured_s: 0.0,
        cached: Some(path.to_path_buf()),
    })
}

/// Holds an exclusive lock on `dir/.lock` (made with `dir`) until dropped; `None` when the
/// folder cannot be made or locked, and then nothing waits.
fn lock_folder(dir: &Path) -> Option<std::fs::File> {
    std::fs::create_dir_all(dir).ok()?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".lock"))
        .ok()?;
    file.lock().ok()?;
    Some(file)
}

/// The device as the cache tells machines apart: the CPU's model name and a digest of its
/// flags (machines of one name differ in AMX and AVX-512), or the GPU's model.
fn device_identity(device: Device) -> String {
    match device {
        Device::Cpu => {
            let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let field = |name: &str| {
                info.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_once(':'))
                    .map_or("", |(_, v)| v.trim())
                    .to_owned()
            };
            let flags = Sha256::digest(field("flags").as_bytes());
            let flags: String = flags[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("cpu {} (flags {flags})", field("model name"))
        }
        Device::Cuda(i) => {
            // The driver lists GPUs by PCI address, which need not be CUDA's order: the key
            // names every model the machine has, with the index.
            let mut models: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
                .map(|gpus| {
                    gpus.flatten()
                        .filter_map(|gpu| {
                            std::fs::read_to_string(gpu.path().join("information")).ok()
                        })
                        .filter_map(|text| {
                            text.lines()
                                .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            models.sort();
            format!("cuda:{i} of [{}]", models.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// The cached decisions under the cache root, for `contrastive info`: each file with its
/// device, model and choice in one line.
pub fn cached_numerics() -> Vec<(PathBuf, String)> {
    let Some(root) = cache_root(&|k| std::env::var_os(k)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(root.join("numerics")) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, String)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|path| {
            let entry: CacheEntry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let layout = if entry.channels_last {
                "channels-last"
            } else {
                "NCHW"
            };
            let line = format!(
                "{} {layout} for {:?} at {}x{} ({} threads, {})",
                entry.precision,
                entry.key.model.backbone,
                entry.key.side,
                entry.key.side,
                entry.key.threads,
                entry.key.device
            );
            Some((path, line))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrastive_models::{Backbone, HeadKind, Stem};

    fn small_cnn() -> ModelConfig {
        ModelConfig {
            backbone: Backbone::SmallCnn,
            in_channels: 1,
            stem: Stem::Cifar,
            head: HeadKind::Simclr,
            head_hidden: 16,
            head_out: 8,
        }
    }

    #[test]
    fn trial_batches_scale_with_the_input_and_never_exceed_the_step() {
        assert_eq!(trial_views(&small_cnn(), 28, 512), 64);
        assert_eq!(trial_views(&small_cnn(), 28, 20), 20);
        let rgb = ModelConfig {
            in_channels: 3,
            ..small_cnn()
        };
        assert_eq!(trial_views(&rgb, 32, 512), 21);
        assert_eq!(trial_views(&rgb, 224, 512), 8);
    }

    #[test]
    fn explicit_settings_are_obeyed_without_measuring() {
        let choice = choose_numerics(
            small_cnn(),
            8,
            Device::Cpu,
            Some(Precision::Fp32),
            Some(false),
            16,
        )
        .unwrap();
        assert_eq!(
            choice.chosen,
            Numerics {
                precision: Precision::Fp32,
                channels_last: false
            }
        );
        assert!(choice.trials.is_empty() && choice.cached.is_none());
    }

    #[test]
    fn every_candidate_is_timed_and_the_fastest_fp32_wins_unless_bf16_pays() {
        let candidates = [Precision::Fp32, Precision::Bf16].map(|precision| Numerics {
            precision,
            channels_last: false,
        });
        let choice = measure(&candidates, small_cnn(), 8, Device::Cpu, 8).unwrap();
        assert_eq!(choice.trials.len(), 2);
        assert!(choice.trials.iter().all(|t| t.views_per_s > 0.0));
        assert!(choice.trials[0].views_per_s >= choice.trials[1].views_per_s);
        let rate = |p: &str| {
            choice
                .trials
                .iter()
                .find(|t| t.precision == p)
                .unwrap()
                .views_per_s
        };
        let expected = if rate("bf16") >= LOW_PRECISION_MARGIN * rate("fp32") {
            Precision::Bf16
        } else {
            Precision::Fp32
        };
        assert_eq!(choice.chosen.precision, expected, "{}", choice.describe());
    }
}
