//! The Python environment of the peers: `$PEER_PYTHON`, else the virtual environment that
//! `cargo xtask setup` installed torch into, with the pins of `bench/peers/requirements.txt`
//! installed where missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One pinned requirement: its pip spec, and whether it goes in without dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `name==version` or `name`.
    pub spec: String,
    /// Installed with `pip install --no-deps`.
    pub no_deps: bool,
}

impl Requirement {
    /// The distribution name (before any `==`).
    pub fn name(&self) -> &str {
        self.spec.split("==").next().unwrap_or(&self.spec).trim()
    }

    /// The pinned version, if any.
    pub fn version(&self) -> Option<&str> {
        self.spec.split_once("==").map(|(_, v)| v.trim())
    }
}

/// Parses `requirements.txt`: one spec per line, `# comments`, `; no-deps` markers.
pub fn parse_requirements(text: &str) -> Vec<Requirement> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (spec, marker) = l.split_once(';').unwrap_or((l, ""));
            Requirement {
                spec: spec.trim().to_owned(),
                no_deps: marker.trim() == "no-deps",
            }
        })
        .collect()
}

/// The Python that runs the peers, with every pinned requirement installed.
pub fn python(root: &Path) -> Result<PathBuf> {
    let python = environment(root)?;
    install_missing(root, &python)?;
    Ok(python)
}

/// The peers' Python as it is, installing nothing; `None` when there is none.
#[cfg(test)]
pub fn python_without_installing(root: &Path) -> Option<PathBuf> {
    environment(root).ok()
}

/// `$PEER_PYTHON`, else the Python of the environment `.libtorch` points into.
fn environment(root: &Path) -> Result<PathBuf> {
    Ok(match std::env::var_os("PEER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let torch = std::fs::canonicalize(root.join(".libtorch"))
                .context("no .libtorch link: run `cargo xtask setup` first")?;
            // <venv>/lib/pythonX.Y/site-packages/torch -> <venv>/bin/python
            let venv = torch
                .ancestors()
                .nth(4)
                .context("libtorch is not in a venv")?;
            let python = venv.join("bin").join("python");
            if !python.is_file() {
                bail!(
                    "libtorch at {} is not inside a Python environment; set PEER_PYTHON to a \
                     Python with pip",
                    torch.display()
                );
            }
            python
        }
    })
}

/// Installs the pins of `bench/peers/requirements.txt` that `python` lacks.
fn install_missing(root: &Path, python: &Path) -> Result<()> {
    let path = root.join("bench/peers/requirements.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let requirements = parse_requirements(&text);
    let missing: Vec<&Requirement> = requirements
        .iter()
        .filter(|r| {
            let have = installed_version(python, r.name());
            match r.version() {
                Some(pinned) => have.as_deref() != Some(pinned),
                None => have.is_none(),
            }
        })
        .collect();
    for no_deps in [false, true] {
        let specs: Vec<&str> = missing
            .iter()
            .filter(|r| r.no_deps == no_deps)
            .map(|r| r.spec.as_str())
            .collect();
        if specs.is_empty() {
            continue;
        }
        println!("peers: installing {}", specs.join(" "));
        let mut pip = Command::new(python);
        pip.args(["-m", "pip", "install", "--quiet"]);
        if no_deps {
            pip.arg("--no-deps");
        }
        let status = pip.args(&specs).status().context("running pip")?;
        if !status.success() {
            bail!("pip install {} failed ({status})", specs.join(" "));
        }
    }
    Ok(())
}

/// The installed version of distribution `name` in `python`'s environment.
fn installed_version(python: &Path, name: &str) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, importlib.metadata as m; print(m.version(sys.argv[1]))",
            name,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_pins_parse() {
        let text =
            std::fs::read_to_string(crate::workspace_root().join("bench/peers/requirements.txt"))
                .unwrap();
        let pins = parse_requirements(&text);
        let torch = pins.iter().find(|r| r.name() == "torch").unwrap();
        assert_eq!(torch.version(), Some("2.13.0"));
        assert!(!torch.no_deps);
        let lightly = pins.iter().find(|r| r.name() == "lightly").unwrap();
        assert!(lightly.no_deps);
        assert!(pins.iter().any(|r| r.name() == "faiss-cpu"));
        assert!(pins.iter().all(|r| !r.spec.contains('#')));
    }
}
