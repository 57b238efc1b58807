//! `contrastive-bench WORKLOAD [--small] [--runs N]`: runs W2, W3, W4 or the ceiling and
//! prints one JSON [`Row`](contrastive_bench::Row) per line (what `cargo xtask bench`
//! reads). `contrastive-bench peak W3-NAME` prints the peak memory one run of a W3
//! workload adds, measured in this fresh process. `contrastive-bench chart BARS.json OUT.png`
//! draws `[[label, factor], ...]` as a factor chart (how many times better ours is).

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use contrastive_bench::{Scale, ceiling, peak_added_mib, w2, w3, w4, w4_approx};
use contrastive_tensor::set_threads;

fn main() -> Result<()> {
    set_threads(2)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args.first().context(
        "usage: contrastive-bench <w2|w3|w4|w4-approx|ceiling> [--small] [--runs N] | peak <w3 workload>",
    )?;
    if workload == "chart" {
        let (bars, out) = (args.get(1), args.get(2));
        let (Some(bars), Some(out)) = (bars, out) else {
            bail!("usage: contrastive-bench chart BARS.json OUT.png");
        };
        let text = std::fs::read_to_string(bars).with_context(|| format!("reading {bars}"))?;
        let bars: Vec<(String, Option<f64>)> = serde_json::from_str(&text)?;
        let bars: Vec<(String, f64)> = bars
            .into_iter()
            .map(|(l, f)| (l, f.unwrap_or(f64::NAN)))
            .collect();
        contrastive_draw::factor_chart(out.as_ref(), "Ours vs the Python peers", &bars)?;
        return Ok(());
    }
    if workload == "peak" {
        let name = args.get(1).context("peak needs a W3 workload name")?;
        let run = w3::workload(name)?;
        let mib = peak_added_mib(run).context("peak memory is measured on Linux only")?;
        println!("{mib}");
        return Ok(());
    }
    let scale = if args.iter().any(|a| a == "--small") {
        Scale::Small
    } else {
        Scale::Full
    };
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("--runs needs a number")?.parse()?,
        None => 5,
    };
    let rows = match workload.as_str() {
        "w2" => w2::rows(scale, runs)?,
        "w3" => w3::rows(scale, runs, &peak_in_child)?,
        "w4" => w4::rows(scale, runs)?,
        "w4-approx" => w4_approx::rows(scale, runs)?,
        "ceiling" => ceiling::rows(scale, runs),
        other => bail!("unknown workload {other:?}: w2, w3, w4, w4-approx or ceiling"),
    };
    for row in rows {
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}

/// The peak memory of one run of W3 workload `name`, measured in a fresh child process.
fn peak_in_child(name: &str) -> Option<f64> {
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .args(["peak", name])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
