//! Will a step fit in memory? Measured before the first step, so that a batch too large for
//! the machine is refused with a message instead of the run being killed by the kernel's
//! out-of-memory killer without a word.
//!
//! The estimate comes from the run's own model: two trial steps (forward and backward) of a
//! fresh copy at a few images each, whose peak resident memory (`VmHWM`, reset between them
//! through `/proc/self/clear_refs`) gives the memory each image-view adds; a step of the
//! configured batch needs that times its views. The memory available is the least of
//! `MemAvailable` and the cgroup's (v2) room, or `run.memory_limit` when set. Linux only;
//! elsewhere, and on GPUs, nothing is measured.

use contrastive_models::{EmbeddingModel, ModelConfig};
use contrastive_tensor::{Device, Kind, Precision, Tensor, nn::VarStore, seeded, to_channels_last};

use crate::Result;
use crate::error::invalid;
use crate::numerics::trial_step;

/// What one training step is expected to need, and what the machine has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMemory {
    /// Bytes each image-view of a batch adds to a step (activations and their gradients).
    pub per_view: f64,
    /// Image-views in a step of the configured batch.
    pub views: u64,
    /// Bytes available to the run.
    pub available: u64,
}

impl StepMemory {
    /// Bytes a step of the configured batch needs beyond what is already allocated.
    pub fn needed(&self) -> f64 {
        self.per_view * self.views as f64
    }

    /// The largest batch (in images, with `views_per_image` views each) that fits.
    pub fn largest_batch(&self, views_per_image: u64) -> u64 {
        (self.available as f64 / (self.per_view * views_per_image as f64).max(1.0)) as u64
    }

    /// An error (naming `data.batch_size`) when a step cannot fit, a warning when it takes
    /// more than 80 % of what is available, nothing otherwise.
    pub fn check(&self, batch: usize, views_per_image: u64) -> Result<Option<String>> {
        let gib = |bytes: f64| bytes / (1u64 << 30) as f64;
        let needed = self.needed();
        let said = format!(
            "a step of {batch} images x {views_per_image} views needs about {:.2} GiB \
             (measured: {:.1} MiB per view) and {:.2} GiB is available",
            gib(needed),
            self.per_view / (1u64 << 20) as f64,
            gib(self.available as f64)
        );
        if needed > self.available as f64 {
            return Err(invalid(
                "data.batch_size",
                format!(
                    "{said}; about {} images per batch fit (or raise run.memory_limit)",
                    self.largest_batch(views_per_image)
                ),
            ));
        }
        Ok((needed > 0.8 * self.available as f64).then(|| format!("memory is tight: {said}")))
    }
}

/// Measures a step of `config`'s model on `[C, side, side]` inputs on the CPU (as the run
/// will compute it: `precision`, `channels_last`), for `views` image-views in all, against
/// `limit` bytes (default: what the system has free); `None` where it cannot be measured
/// (not Linux, a GPU, no `/proc`). The peak is the process's: another thread allocating
/// during the trials skews it, so each view counts at least its input's bytes.
pub fn measure_step_memory(
    config: ModelConfig,
    side: i64,
    device: Device,
    precision: Precision,
    channels_last: bool,
    views: u64,
    limit: Option<u64>,
) -> Result<Option<StepMemory>> {
    if device != Device::Cpu {
        return Ok(None);
    }
    let Some(available) = limit.or_else(available_bytes) else {
        return Ok(None);
    };
    // A fresh copy, drawn from its own seed: the run's model and generators are untouched.
    let vs = VarStore::new(device);
    let model = seeded(0, || EmbeddingModel::new(&vs.root(), config));
    let mut peaks = Vec::new();
    for n in TRIAL_VIEWS {
        if !reset_peak() {
            return Ok(None);
        }
        let x = seeded(0, || {
            Tensor::randn([n, config.in_channels, side, side], (Kind::Float, device))
        });
        let x = if channels_last {
            to_channels_last(&x)?
        } else {
            x
        };
        trial_step(&model, &x, device, precision)?;
        let Some(peak) = peak_bytes() else {
            return Ok(None);
        };
        peaks.push(peak as f64);
        drop(x);
    }
    let input = (config.in_channels * side * side * 4) as f64;
    let per_view = ((peaks[1] - peaks[0]) / (TRIAL_VIEWS[1] - TRIAL_VIEWS[0]) as f64).max(input);
    Ok(Some(StepMemory {
        per_view,
        views,
        available,
    }))
}

/// Image-views of the two trial steps.
const TRIAL_VIEWS: [i64; 2] = [4, 12];

/// Parses a size such as `512MiB`, `12GiB`, `2GB` or `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => {
            return Err(invalid(
                "run.memory_limit",
                format!("unknown unit {other:?} in {text:?} (use B, KiB, MiB, GiB, MB, GB)"),
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        invalid(
            "run.memory_limit",
            format!("{text:?} is not a size such as \"12GiB\""),
        )
    })?;
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid("run.memory_limit", "must be more than 0"));
    }
    Ok((value * scale) as u64)
}

/// Bytes the system can give this process: the least of `MemAvailable` and the room left
/// in its cgroup (v2), when either is known.
fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = kib_field(&meminfo, "MemAvailable:")?;
    let cgroup = (|| {
        let read = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok();
        let max: u64 = read("memory.max")?.trim().parse().ok()?;
        let current: u64 = read("memory.current")?.trim().parse().ok()?;
        Some(max.saturating_sub(current))
    })();
    Some(cgroup.map_or(available, |room| room.min(available)))
}

/// The process's peak resident memory since the last [`reset_peak`].
fn peak_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// Resets the peak resident memory to the current one (Linux 4.0 and later).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The value of a `Name:   1234 kB` line, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "12 parsecs", "-1GiB", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_step_that_cannot_fit_is_refused_with_the_batch_that_would() {
        let step = StepMemory {
            per_view: (4 << 20) as f64,
            views: 512,
            available: 1 << 30,
        };
        // 512 views x 4 MiB = 2 GiB > 1 GiB: 128 images x 2 views fit.
        let err = step.check(256, 2).unwrap_err().to_string();
        assert!(
            err.contains("data.batch_size") && err.contains("about 128 images"),
            "{err}"
        );
        let roomy = StepMemory {
            available: 16 << 30,
            ..step
        };
        assert_eq!(roomy.check(256, 2).unwrap(), None);
        let tight = StepMemory {
            available: (2 << 30) + (1 << 28),
            ..step
        };
        assert!(
            tight
                .check(256, 2)
                .unwrap()
                .unwrap()
                .contains("memory is tight")
        );
    }
}
