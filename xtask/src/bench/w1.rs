//! W1 training throughput, ours (`contrastive train` on `configs/w1.toml`,
//! stopped after a few steps) and lightly's (`bench/peers/w1_lightly.py`), as rows:
//! `train_fp32` (fp32, NCHW on both sides), `train_bf16_cl` (bf16 autocast and
//! channels-last, the peer's fastest setting) and `train_default` (ours with `auto`
//! precision and layout, which a run decides by measurement).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::report::Row;

/// Steps timed after the warm-up.
const WARMUP: usize = 5;
/// Views in a W1 step (256 images, two views each).
const VIEWS_PER_STEP: f64 = 512.0;

fn views_row(name: &str, views_per_s: f64, peer: Option<&str>) -> Row {
    Row {
        workload: "W1".into(),
        name: name.into(),
        unit: "views/s".into(),
        value: Some(views_per_s),
        higher_is_better: true,
        peak_mib: None,
        note: None,
        peer: peer.map(Into::into),
    }
}

/// The peer's precision flag and its label.
type PeerSetting = (&'static str, &'static str);

/// The W1 settings: row name, our precision and channels-last, and the peer doing the same
/// work (its precision flag and label). The default (`auto`: decided by measurement) is
/// compared through the two explicit rows, which it must match or beat.
const SETTINGS: [(&str, &str, &str, Option<PeerSetting>); 3] = [
    (
        "train_fp32",
        "fp32",
        "off",
        Some(("fp32", "lightly (fp32)")),
    ),
    (
        "train_bf16_cl",
        "bf16",
        "on",
        Some(("bf16-cl", "lightly (bf16 + channels-last)")),
    ),
    ("train_default", "auto", "auto", None),
];

/// One interleaved round: ours fp32, the peer fp32, ours bf16 + channels-last, the peer's
/// best, ours by default.
pub fn round(
    root: &Path,
    binary: &Path,
    python: Option<&Path>,
    data: &Path,
    steps: usize,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, precision, channels_last, peer_setting) in SETTINGS {
        let views = ours(root, binary, data, precision, channels_last, steps)?;
        rows.push(views_row(name, views, None));
        if let (Some(python), Some((peer_precision, label))) = (python, peer_setting) {
            let views = peer(root, python, data, peer_precision, steps)?;
            rows.push(views_row(name, views, Some(label)));
        }
    }
    Ok(rows)
}

/// Our views/s over `steps` steps after the warm-up.
fn ours(
    root: &Path,
    binary: &Path,
    data: &Path,
    precision: &str,
    channels_last: &str,
    steps: usize,
) -> Result<f64> {
    let out = tempfile::tempdir()?;
    let run = out.path().join("run");
    let status = Command::new(binary)
        .current_dir(root)
        .args(["train", "--config", "configs/w1.toml", "--quiet"])
        .arg("--out")
        .arg(&run)
        .arg("--data-dir")
        .arg(data)
        .args(["--set", &format!("run.max_steps={}", steps + WARMUP)])
        .args(["--set", &format!("run.precision=\"{precision}\"")])
        .args(["--set", &format!("run.channels_last=\"{channels_last}\"")])
        .args(["--set", "eval.every_epochs=0", "--set", "eval.final=false"])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running contrastive train")?;
    if !status.success() {
        bail!("contrastive train ({precision}) failed ({status})");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl"))?;
    views_per_second(&metrics)
}

/// Views/s over the steps of `metrics.jsonl` after the warm-up: views over the summed step
/// times.
pub fn views_per_second(metrics: &str) -> Result<f64> {
    let rates: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "step")
        .filter_map(|r| r["views_per_s"].as_f64())
        .skip(WARMUP)
        .collect();
    if rates.is_empty() {
        bail!("no timed steps in metrics.jsonl");
    }
    let seconds: f64 = rates.iter().map(|r| VIEWS_PER_STEP / r).sum();
    Ok(rates.len() as f64 * VIEWS_PER_STEP / seconds)
}

/// The peer's views/s over `steps` steps after its warm-up.
fn peer(root: &Path, python: &Path, data: &Path, precision: &str, steps: usize) -> Result<f64> {
    let out = Command::new(python)
        .current_dir(root)
        .arg("bench/peers/w1_lightly.py")
        .arg("--data")
        .arg(data)
        .args(["--precision", precision, "--steps", &steps.to_string()])
        .output()
        .context("running bench/peers/w1_lightly.py")?;
    if !out.status.success() {
        bail!(
            "w1_lightly.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("w1_lightly.py printed nothing")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    result["views_per_s"]
        .as_f64()
        .context("w1_lightly.py printed no views_per_s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_per_second_skips_the_warm_up_and_weighs_by_time() {
        let mut lines: Vec<String> = (0..WARMUP)
            .map(|_| r#"{"kind":"step","views_per_s":1.0}"#.to_owned())
            .collect();
        lines.push(r#"{"kind":"step","views_per_s":512.0}"#.into()); // 1 s
        lines.push(r#"{"kind":"epoch","views_per_s":9.0}"#.into());
        lines.push(r#"{"kind":"step","views_per_s":256.0}"#.into()); // 2 s
        let rate = views_per_second(&lines.join("\n")).unwrap();
        assert!((rate - 1024.0 / 3.0).abs() < 1e-9, "{rate}");
        assert!(views_per_second(r#"{"kind":"step","views_per_s":5.0}"#).is_err());
    }
}
