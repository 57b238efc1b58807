//! Using the crates from a project outside the workspace: `cargo xtask setup --cargo-config
//! DIR` writes the Cargo settings that project needs (where libtorch is, and the linker
//! wrapper that records libtorch's folder in its binaries), and `cargo xtask test` checks
//! that a new project built with only that step runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The first line of a config written by [`write_cargo_config`]; a file without it is the
/// user's own and is never overwritten.
const MARK: &str = "# Written by `cargo xtask setup --cargo-config`";

/// Writes `project/.cargo/config.toml` so that `project` builds against the crates of the
/// workspace at `root` and its binaries find libtorch at run time. Refuses to replace a
/// config that it did not write.
pub fn write_cargo_config(root: &Path, project: &Path) -> Result<PathBuf> {
    if !project.join("Cargo.toml").is_file() {
        bail!(
            "{} holds no Cargo.toml: give the folder of the project that uses the crates",
            project.display()
        );
    }
    let path = project.join(".cargo").join("config.toml");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(MARK)
    {
        bail!(
            "{} exists and was not written by setup; add these lines to it yourself:\n{}",
            path.display(),
            cargo_config(root)
        );
    }
    std::fs::create_dir_all(path.parent().expect("a config's folder"))?;
    std::fs::write(&path, cargo_config(root))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The config's text for the workspace at `root`.
fn cargo_config(root: &Path) -> String {
    let libtorch = root.join(crate::libtorch::LINK_NAME);
    let linker = root.join(".cargo").join("link-libtorch.sh");
    let mut text = format!(
        "{MARK} of {root}.\n\
         # LIBTORCH tells tch's build where libtorch is; the linker wrapper writes its lib/\n\
         # folder into every binary as a run path, so they start without LD_LIBRARY_PATH.\n\
         # Write it again (same command) after moving the contrastive checkout.\n\
         [env]\n\
         LIBTORCH = {libtorch:?}\n",
        root = root.display(),
        libtorch = libtorch.display().to_string(),
    );
    for target in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
        text.push_str(&format!(
            "\n[target.{target}]\nlinker = {:?}\n",
            linker.display().to_string()
        ));
    }
    text
}

/// Creates a new Cargo project in a temporary folder that depends on contrastive-losses and
/// contrastive-retrieval by path, sets it up with [`write_cargo_config`] alone, builds it
/// (into the workspace's target folder, with the workspace's optimised dependencies, so
/// that tch and its C++ wrapper are reused) and runs its binary with no libtorch variable
/// set; fails unless it prints its result.
pub fn check(root: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("outside");
    std::fs::create_dir_all(project.join("src"))?;
    let dep = |name: &str| {
        format!(
            "contrastive-{name} = {{ path = {:?} }}\n",
            root.join("crates").join(name).display().to_string()
        )
    };
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"outside\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\n{}{}{}\n[workspace]\n\n\
             # As the guide suggests: dependencies optimised, as in the workspace's dev\n\
             # profile, so what it built (tch and its C++ wrapper) is reused.\n\
             [profile.dev.package.\"*\"]\nopt-level = 2\n",
            dep("tensor"),
            dep("losses"),
            dep("retrieval")
        ),
    )?;
    std::fs::write(project.join("src").join("main.rs"), OUTSIDE_MAIN)?;
    // The workspace's lock file pins the same versions, so nothing is resolved anew.
    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock"))?;
    write_cargo_config(root, &project)?;
    let target = root.join("target");
    let cargo = |args: &[&str]| {
        let mut command = Command::new("cargo");
        command.args(args).current_dir(&project);
        // What `cargo xtask` itself was given (the workspace's LIBTORCH, the package
        // variables `cargo run` sets) is not the outside project's; the user's own cargo
        // settings (CARGO_HOME, CARGO_NET_OFFLINE...) are.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let ours = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix));
            if ours
                || [
                    "LIBTORCH",
                    "LD_LIBRARY_PATH",
                    "CARGO",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        command.env("CARGO_TARGET_DIR", &target);
        command
    };
    let status = cargo(&["build", "--quiet"])
        .status()
        .context("running cargo build in the outside project")?;
    if !status.success() {
        bail!("the outside project did not build ({status})");
    }
    let binary = target.join("debug").join("outside");
    let output = Command::new(&binary)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBTORCH")
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !printed.contains("nearest of each query: [0, 1]") {
        bail!(
            "the outside project's binary failed ({}): {printed}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("xtask test: a project outside the workspace built and ran: {printed}");
    Ok(())
}

/// The outside project's program: a loss with its gradient and an exact search.
const OUTSIDE_MAIN: &str = r#"use contrastive_losses::{InfoNce, InfoNceConfig};
use contrastive_retrieval::{Metric, search};
use contrastive_tensor::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let z1 = Tensor::randn([8, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let z2 = &z1 + 0.1 * Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
    let loss = InfoNce::new(InfoNceConfig::new(0.5))?.views(&z1, &z2)?;
    loss.backward();
    let base = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let queries = Tensor::from_slice(&[0.9f32, 0.1, 0.2, 0.8]).view([2, 2]);
    let found = search(&base, &queries, 1, Metric::Cosine)?;
    let nearest = Vec::<i64>::try_from(&found.indices.view([-1]))?;
    println!(
        "loss {:.3}, gradient norm {:.3}, nearest of each query: {nearest:?}",
        loss.double_value(&[]),
        z1.grad().norm().double_value(&[])
    );
    Ok(())
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_checkout_and_never_replaces_a_users_own() {
        let root = Path::new("/src/contrastive");
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path();
        let err = write_cargo_config(root, project).unwrap_err().to_string();
        assert!(err.contains("holds no Cargo.toml"), "{err}");
        std::fs::write(project.join("Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        let path = write_cargo_config(root, project).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("LIBTORCH = \"/src/contrastive/.libtorch\"")
                && text.contains("linker = \"/src/contrastive/.cargo/link-libtorch.sh\""),
            "{text}"
        );
        // Its own file is rewritten; the user's is left alone, with the lines to add.
        write_cargo_config(root, project).unwrap();
        std::fs::write(&path, "[build]\njobs = 1\n").unwrap();
        let err = write_cargo_config(root, project).unwrap_err().to_string();
        assert!(
            err.contains("was not written by setup") && err.contains("LIBTORCH ="),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[build]\njobs = 1\n"
        );
    }
}
