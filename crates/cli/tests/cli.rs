//! The `contrastive` binary refuses bad input before any work, with messages that say what
//! to change.

use std::process::Command;

fn contrastive(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_contrastive"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/fmnist-simclr.toml"
);

#[test]
fn bad_configs_and_overrides_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["--set", "run.epoch=3"], "unknown field `epoch`"),
        (&["--lr=-1"], "optimizer.lr: must be > 0"),
        (
            &["--set", "method.queue_size=4096"],
            "does not apply to simclr",
        ),
        (&["--device", "cuda:9"], "cuda:9"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["train", "--config", CONFIG, "--out", &out];
        args.extend_from_slice(extra);
        let (ok, stderr) = contrastive(&args, &[]);
        assert!(!ok, "{extra:?} was accepted");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    assert!(!dir.path().join("run").exists(), "nothing was written");
}

#[test]
fn a_missing_dataset_names_the_download_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let empty = dir.path().join("data").display().to_string();
    let (ok, stderr) = contrastive(
        &[
            "train",
            "--config",
            CONFIG,
            "--out",
            &out,
            "--set",
            "data.dataset=\"mnist\"",
        ],
        &[("CONTRASTIVE_DATA_DIR", &empty)],
    );
    assert!(!ok);
    assert!(stderr.contains("cargo xtask download mnist"), "{stderr}");
}

#[test]
fn resuming_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = contrastive(
        &["train", "--resume", &dir.path().display().to_string()],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("config.toml"), "{stderr}");
}

#[test]
fn video_search_needs_a_run_trained_on_video() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(CONFIG, dir.path().join("config.toml")).unwrap();
    let run = dir.path().display().to_string();
    let (ok, stderr) = contrastive(
        &["video", "search", "--run", &run, "--image", "frame.png"],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("not on video"), "{stderr}");
    let (ok, stderr) = contrastive(&["video", "search", "--run", &run], &[]);
    assert!(!ok, "a query is required");
    assert!(stderr.contains("--image"), "{stderr}");
}
