//! The per-crate criterion benches: `cargo bench --workspace --bench '*'` (with `--quick`
//! unless full), then their estimates read back from `target/criterion`.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;

use super::report::Row;

/// Runs every criterion bench of the workspace and returns each benchmark's mean time.
pub fn run(root: &Path, full: bool) -> Result<Vec<Row>> {
    let started = SystemTime::now();
    // `--bench '*'`: the bench targets only (`--benches` would also pass the flags to the
    // libraries' own test harnesses, which refuse them).
    let mut args = vec!["bench", "--workspace", "--bench", "*", "--quiet"];
    if !full {
        args.extend(["--", "--quick"]);
    }
    crate::run_command(root, "cargo", &args)?;
    read(&root.join("target").join("criterion"), started)
}

/// The mean of every benchmark under `dir` whose estimate was written after `since`.
pub fn read(dir: &Path, since: SystemTime) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let in_new = path.parent().is_some_and(|p| p.ends_with("new"));
            if !in_new || path.file_name().is_none_or(|n| n != "estimates.json") {
                continue;
            }
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            let benchmark = path.with_file_name("benchmark.json");
            if !fresh || !benchmark.is_file() {
                continue;
            }
            let estimates: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            let id: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&benchmark)?)?;
            let (Some(mean_ns), Some(name)) = (
                estimates["mean"]["point_estimate"].as_f64(),
                id["full_id"].as_str(),
            ) else {
                continue;
            };
            rows.push(Row {
                workload: "criterion".into(),
                name: name.into(),
                unit: "µs".into(),
                value: Some(mean_ns / 1e3),
                higher_is_better: false,
                peak_mib: None,
                note: None,
                peer: None,
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_estimates_are_read_and_stale_ones_left() {
        let dir = tempfile::tempdir().unwrap();
        let write = |group: &str, id: &str, mean_ns: f64| {
            let new = dir.path().join(group).join("new");
            std::fs::create_dir_all(&new).unwrap();
            std::fs::write(
                new.join("estimates.json"),
                format!(r#"{{"mean":{{"point_estimate":{mean_ns}}}}}"#),
            )
            .unwrap();
            std::fs::write(
                new.join("benchmark.json"),
                format!(r#"{{"full_id":"{id}"}}"#),
            )
            .unwrap();
        };
        write("old", "old", 1.0);
        let since = SystemTime::now() + std::time::Duration::from_millis(5);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write("loss/nt_xent", "loss/nt_xent", 2500.0);
        let rows = read(dir.path(), since).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].name, "loss/nt_xent");
        assert_eq!(rows[0].value, Some(2.5));
    }
}
