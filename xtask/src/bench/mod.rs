//! `cargo xtask bench`: the benchmarks of `../shared/benchmarks.md` in one command.
//!
//! Builds `contrastive-bench` and `contrastive` in release, then for each round runs W1
//! (training throughput through `contrastive train`), W2-W4 and the ceiling (through
//! `contrastive-bench`) and, in the first round, W6 (`contrastive serve` under load), each followed at once by its Python peer with `--peers`
//! (interleaved, so load on this shared machine hits both sides alike); then the criterion
//! benches of every crate. Rows are summarised over the rounds (median, range), ours paired
//! with each peer that did the same work, and written as a generated section of
//! `docs/benchmarks.md` with a chart of the factors (`docs/img/bench-ratios.png`).

mod criterion;
mod peers;
mod report;
mod w1;
mod w6;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use report::{Comparison, Row, Summary};

/// What `cargo xtask bench` runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Also run the Python peers (creating or completing their environment first).
    #[arg(long)]
    pub peers: bool,
    /// More rounds (5) and criterion's full sampling.
    #[arg(long)]
    pub full: bool,
    /// Tiny sizes, one round, a report in target/ (a smoke test of the bench code).
    #[arg(long)]
    pub small: bool,
    /// Rounds of every workload (default 3, or 5 with --full).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Only these parts (repeatable): w1, w2, w3, w4, w4-approx and w6 (first round
    /// only), ceiling, criterion.
    #[arg(long)]
    pub only: Vec<String>,
    /// Where the report section goes (default docs/benchmarks.md; with --small
    /// target/bench-small.md, with --only target/bench-partial.md, so that a part never
    /// replaces the whole run's generated section).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

const PARTS: [&str; 8] = [
    "w1",
    "w2",
    "w3",
    "w4",
    "w4-approx",
    "w6",
    "ceiling",
    "criterion",
];

/// Parts measured in the first round only: w4-approx builds an index over a million vectors
/// (minutes) and reports medians of repeated searches within that round; w6 trains, embeds
/// 60 000 images three ways and serves thousands of queries per backend.
const ONCE: [&str; 2] = ["w4-approx", "w6"];

impl Options {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let mut words = vec!["cargo xtask bench".to_owned()];
        for (on, flag) in [
            (self.peers, "--peers"),
            (self.full, "--full"),
            (self.small, "--small"),
        ] {
            if on {
                words.push(flag.into());
            }
        }
        if let Some(r) = self.rounds {
            words.push(format!("--rounds {r}"));
        }
        words.extend(self.only.iter().map(|p| format!("--only {p}")));
        words.join(" ")
    }
}

/// Runs the benchmarks and writes the report.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    if let Some(bad) = options.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
        bail!("--only {bad}: the parts are {}", PARTS.join(", "));
    }
    crate::libtorch::setup(root)?;
    crate::run_command(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "contrastive-bench",
            "-p",
            "contrastive-cli",
        ],
    )?;
    let release = root.join("target").join("release");
    let python = if options.peers {
        Some(peers::python(root)?)
    } else {
        None
    };
    let rounds = options
        .rounds
        .unwrap_or(if options.small {
            1
        } else if options.full {
            5
        } else {
            3
        })
        .max(1);
    let data = if options.wants("w1") {
        Some(crate::download::run("fashion-mnist", None)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for round in 1..=rounds {
        println!("bench: round {round} of {rounds}");
        if let Some(data) = &data {
            let steps = if options.small { 2 } else { 30 };
            let contrastive = release.join("contrastive");
            rows.extend(w1::round(
                root,
                &contrastive,
                python.as_deref(),
                data,
                steps,
            )?);
        }
        if options.wants("w6") && round == 1 {
            println!("bench: W6, the search service under load");
            rows.extend(w6::run(
                root,
                &release.join("contrastive"),
                python.as_deref(),
                options.small,
            )?);
        }
        for (part, script) in [
            ("w2", Some("augment_w2.py")),
            ("w3", Some("losses_w3.py")),
            ("w4", Some("search_w4.py")),
            ("w4-approx", Some("search_w4_approx.py")),
            ("ceiling", None),
        ] {
            if !options.wants(part) || (round > 1 && ONCE.contains(&part)) {
                continue;
            }
            rows.extend(ours(root, &release, part, options.small)?);
            if let (Some(python), Some(script)) = (&python, script) {
                rows.extend(peer(root, python, script, options.small)?);
            }
        }
    }
    if options.wants("criterion") && !options.small {
        // The rounds' figures are kept whatever happens to the criterion benches.
        match criterion::run(root, options.full) {
            Ok(found) => rows.extend(found),
            Err(e) => {
                eprintln!("bench: the criterion benches failed, reported without them: {e:#}")
            }
        }
    }

    let saved = root.join("target").join("bench-rows.json");
    std::fs::write(&saved, serde_json::to_string_pretty(&rows)?)
        .with_context(|| format!("writing {}", saved.display()))?;
    let summaries = report::summarise(&rows);
    let comparisons = report::compare(&summaries);
    println!("{}", report::table(&comparisons));
    let path = options.report.clone().unwrap_or_else(|| {
        if options.small {
            root.join("target").join("bench-small.md")
        } else if !options.only.is_empty() {
            root.join("target").join("bench-partial.md")
        } else {
            root.join("docs").join("benchmarks.md")
        }
    });
    let chart = path
        .parent()
        .unwrap_or(Path::new("."))
        .join("img")
        .join("bench-ratios.png");
    draw_chart(&release, &comparisons, &chart)?;
    let image = chart
        .strip_prefix(path.parent().unwrap_or(Path::new("")))
        .unwrap_or(&chart)
        .display()
        .to_string();
    let section = render(options, rounds, &summaries, &comparisons, &image);
    let document = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, report::splice(&document, &section))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "bench: report in {}, chart in {}",
        path.display(),
        chart.display()
    );
    Ok(())
}

/// Our rows of one part, from `contrastive-bench`.
fn ours(root: &Path, release: &Path, part: &str, small: bool) -> Result<Vec<Row>> {
    let mut command = Command::new(release.join("contrastive-bench"));
    command.arg(part);
    if small {
        command.args(["--small", "--runs", "1"]);
    }
    rows_of(root, command, &format!("contrastive-bench {part}"))
}

/// A peer script's rows.
fn peer(root: &Path, python: &Path, script: &str, small: bool) -> Result<Vec<Row>> {
    let mut command = Command::new(python);
    command.arg(Path::new("bench").join("peers").join(script));
    if small {
        command.args(["--small", "--runs", "1"]);
    }
    rows_of(root, command, script)
}

/// Runs `command` in `root` and parses each JSON line it prints as a row.
fn rows_of(root: &Path, command: Command, what: &str) -> Result<Vec<Row>> {
    println!("bench: {what}");
    stdout_of(root, command, what)?
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("{what} printed {l:?}")))
        .collect()
}

/// Runs `command` in `root` to the end and returns its stdout; a failure carries its stderr.
fn stdout_of(root: &Path, mut command: Command, what: &str) -> Result<String> {
    let out = command
        .current_dir(root)
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The factor chart of every comparison with a peer, drawn by `contrastive-bench chart`.
fn draw_chart(release: &Path, comparisons: &[Comparison], path: &Path) -> Result<()> {
    let bars: Vec<(String, Option<f64>)> = comparisons
        .iter()
        .filter_map(|c| {
            let peer = c.peer.as_ref()?.row.peer.clone()?;
            Some((
                format!("{} {} vs {peer}", c.ours.row.workload, c.ours.row.name),
                c.advantage(),
            ))
        })
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let list = tempfile::NamedTempFile::new()?;
    std::fs::write(list.path(), serde_json::to_string(&bars)?)?;
    let status = Command::new(release.join("contrastive-bench"))
        .arg("chart")
        .arg(list.path())
        .arg(path)
        .status()?;
    if !status.success() {
        bail!("drawing {} failed ({status})", path.display());
    }
    Ok(())
}

/// The machine in words: CPU model, cores, memory.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU")
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown memory".into());
    format!("{model}, {cores} cores, {memory}")
}

fn value_of(summaries: &[Summary], workload: &str, prefix: &str) -> Option<f64> {
    summaries
        .iter()
        .find(|s| {
            s.row.peer.is_none() && s.row.workload == workload && s.row.name.starts_with(prefix)
        })?
        .median
}

/// The generated section of `docs/benchmarks.md`.
fn render(
    options: &Options,
    rounds: usize,
    summaries: &[Summary],
    comparisons: &[Comparison],
    chart: &str,
) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let (with_peers, criterion): (Vec<&Comparison>, Vec<&Comparison>) = comparisons
        .iter()
        .partition(|c| c.ours.row.workload != "criterion");
    let mut md = format!(
        "## Latest `cargo xtask bench` run (generated)\n\n\
         - Command: `{}`\n- Date: {date}\n- Machine: {}; 2 threads on both sides\n\
         - Rounds: {rounds}, ours and the peer interleaved in each; a figure is the median \
         over rounds of each run's own median (5 timed runs after a warm-up; W1: views/s over \
         30 steps after 5). Ranges are the extremes over the rounds.\n",
        options.command(),
        machine()
    );
    let spreads = report::spreads(summaries);
    if let Some((largest, row)) = spreads.first() {
        let middle = spreads[spreads.len() / 2].0;
        md.push_str(&format!(
            "- Noise: between the rounds of this run a figure moved by {:.0} % (median over \
             rows; the most: {:.0} %, {row}). Ratios of two runs that differ by less than \
             that are noise.\n",
            middle * 100.0,
            largest * 100.0
        ));
    }
    md.push('\n');
    let owned: Vec<Comparison> = with_peers.into_iter().cloned().collect();
    md.push_str(&report::table(&owned));
    let flop = value_of(summaries, "ceiling", "w1_step_flop_per_view");
    let lines: Vec<String> = [("fp32", "train_fp32"), ("bf16", "train_bf16_cl")]
        .iter()
        .filter_map(|(kind, row)| {
            let peak = value_of(summaries, "ceiling", &format!("matmul_{kind}"))?;
            let views = value_of(summaries, "W1", row)?;
            let reached = views * flop? / 1e3;
            Some(format!(
                "- W1 `{row}`: {} views/s x {} MFLOP = {} GFLOP/s, {:.0} % of the {kind} \
                 matrix-product ceiling ({} GFLOP/s).",
                report::figure(views),
                report::figure(flop?),
                report::figure(reached),
                100.0 * reached / peak,
                report::figure(peak)
            ))
        })
        .collect();
    if !lines.is_empty() {
        md.push_str("\n### Ceiling\n\n");
        md.push_str(&lines.join("\n"));
        md.push('\n');
    }
    if !criterion.is_empty() {
        md.push_str("\n### Criterion benches (per crate)\n\n| bench | mean |\n|---|---|\n");
        for c in criterion {
            if let Some(v) = c.ours.median {
                let time = if v >= 1000.0 {
                    format!("{} ms", report::figure(v / 1000.0))
                } else {
                    format!("{} µs", report::figure(v))
                };
                md.push_str(&format!("| {} | {time} |\n", c.ours.row.name));
            }
        }
    }
    if comparisons.iter().any(|c| c.peer.is_some()) {
        md.push_str(&format!(
            "\n![How many times better ours is than each peer (log scale)]({chart})\n"
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer scripts compile everywhere, and where their Python modules are installed
    /// (here: the setup environment after `cargo xtask bench --peers`), each runs at small
    /// size and prints rows named as ours.
    #[test]
    fn peer_scripts_compile_and_run_small_where_their_modules_are() {
        let root = crate::workspace_root();
        let python = peers::python_without_installing(&root);
        let Some(python) = python else {
            return; // no Python environment at all: libtorch came from elsewhere
        };
        for script in [
            "augment_w2.py",
            "losses_w3.py",
            "search_w4.py",
            "search_w4_approx.py",
            "service_w6_psycopg.py",
            "w1_lightly.py",
        ] {
            let path = root.join("bench").join("peers").join(script);
            let status = Command::new(&python)
                .args(["-m", "py_compile"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "{script} does not compile");
        }
        let ready = Command::new(&python)
            .args([
                "-c",
                "import torchvision, pytorch_metric_learning, faiss, sklearn",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ready {
            eprintln!("peer modules not installed; ran the compile check only");
            return;
        }
        for (script, workload) in [
            ("losses_w3.py", "W3"),
            ("search_w4.py", "W4"),
            ("search_w4_approx.py", "W4"),
        ] {
            let rows = peer(&root, &python, script, true).unwrap();
            assert!(!rows.is_empty(), "{script} printed no rows");
            for row in &rows {
                assert_eq!(row.workload, workload);
                assert!(row.peer.is_some(), "{script}: {row:?}");
            }
        }
        let w4 = peer(&root, &python, "search_w4.py", true).unwrap();
        assert!(w4.iter().any(|r| r.name == "kmeans_k10_700x128"), "{w4:?}");
    }

    #[test]
    fn the_command_line_is_rebuilt_for_the_report() {
        let options = Options {
            peers: true,
            full: false,
            small: false,
            rounds: Some(4),
            only: vec!["w3".into()],
            report: None,
        };
        assert_eq!(
            options.command(),
            "cargo xtask bench --peers --rounds 4 --only w3"
        );
        assert!(options.wants("w3") && !options.wants("w1"));
    }
}
