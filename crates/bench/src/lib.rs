//! `contrastive-bench`: the workloads of `../shared/benchmarks.md` that run inside one
//! process (W2 augmentation, W3 losses, W4 search and k-means, and the hardware ceiling),
//! each producing [`Row`]s that the `contrastive-bench` binary prints as JSON lines and
//! `cargo xtask bench` collects, pairs with the Python peers' rows of the same name and
//! reports. W1 (training) runs through the `contrastive` binary itself.
//!
//! ```
//! use contrastive_bench::{Scale, w4};
//! let rows = w4::rows(Scale::Small, 1).unwrap();
//! assert!(rows.iter().any(|r| r.name.starts_with("exact_ip_top10")));
//! ```

pub mod ceiling;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w4_approx;

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `W2`, `W3`, `W4` or `ceiling`.
    pub workload: String,
    /// What was measured, the same name the peer's row carries (`nt_xent_1024`).
    pub name: String,
    /// `ms`, `views/s`, `GFLOP/s`...
    pub unit: String,
    /// The median over the runs.
    pub value: f64,
    /// Whether a larger value is better (rates) or a smaller one (times).
    pub higher_is_better: bool,
    /// Peak resident memory one run adds, in MiB, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_mib: Option<f64>,
    /// A second figure worth keeping (NMI of a clustering...), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A time in milliseconds (smaller is better).
    pub fn ms(workload: &str, name: &str, value: f64) -> Self {
        Self::new(workload, name, "ms", value, false)
    }

    /// A rate (larger is better).
    pub fn rate(workload: &str, name: &str, unit: &str, value: f64) -> Self {
        Self::new(workload, name, unit, value, true)
    }

    fn new(workload: &str, name: &str, unit: &str, value: f64, higher_is_better: bool) -> Self {
        Self {
            workload: workload.into(),
            name: name.into(),
            unit: unit.into(),
            value,
            higher_is_better,
            peak_mib: None,
            note: None,
        }
    }
}

/// How large the workloads are: the published sizes, or small ones for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The sizes `../shared/benchmarks.md` defines.
    Full,
    /// Tiny sizes that finish in moments (tests, smoke runs).
    Small,
}

impl Scale {
    /// `full` at full scale, `small` otherwise.
    pub fn pick<T>(self, full: T, small: T) -> T {
        match self {
            Scale::Full => full,
            Scale::Small => small,
        }
    }
}

/// Runs `f` once to warm up, then `runs` times; the median wall time in milliseconds.
pub fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// [`median_ms`] of a fallible `f`: the first error ends the timing and is returned.
pub fn try_median_ms<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    let mut failure = None;
    let ms = median_ms(runs, || {
        if failure.is_none()
            && let Err(e) = f()
        {
            failure = Some(e);
        }
    });
    failure.map_or(Ok(ms), Err)
}

/// The median of `values` (the upper one of an even count); `NaN` for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Peak resident memory, in MiB, that running `f` once adds to this process (Linux: the
/// `VmHWM` high-water mark reset through `/proc/self/clear_refs`); `None` elsewhere.
pub fn peak_added_mib(f: impl FnOnce()) -> Option<f64> {
    let read = |field: &str| -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    let before = read("VmRSS:")?;
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    f();
    Some(((read("VmHWM:")? - before) / 1024.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_rows_serialise() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
        let mut calls = 0;
        let t = median_ms(3, || calls += 1);
        assert_eq!(calls, 4, "a warm-up and three runs");
        assert!(t >= 0.0);
        let mut tries = 0;
        let failed = try_median_ms(3, || {
            tries += 1;
            if tries == 2 {
                Err("second run failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(failed, Err("second run failed"));
        assert_eq!(tries, 2, "no run after the failure");
        let row = Row::ms("W3", "x", 1.5);
        let text = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<Row>(&text).unwrap(), row);
        assert!(!text.contains("peak_mib"), "{text}");
    }

    #[test]
    fn a_large_allocation_raises_the_peak() {
        let Some(mib) = peak_added_mib(|| {
            let v = vec![1u8; 64 << 20];
            std::hint::black_box(&v);
        }) else {
            return; // not Linux
        };
        assert!(mib > 50.0, "{mib} MiB");
    }
}
