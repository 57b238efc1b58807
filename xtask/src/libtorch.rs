//! `cargo xtask setup`: provides libtorch 2.13.0, the exact version tch 0.26 is built for.
//!
//! Where it comes from, in this order:
//! 1. `LIBTORCH` set in your environment (checked, then used as it is);
//! 2. the `.libtorch` link of an earlier setup, when it still points at a valid libtorch;
//! 3. the virtual environment an earlier setup installed into the cache folder;
//! 4. a `python3` on PATH that already has torch 2.13.0;
//! 5. otherwise `pip install torch==2.13.0` into a new virtual environment in the cache folder
//!    (`$CONTRASTIVE_CACHE_DIR`, else `$XDG_CACHE_HOME/contrastive`, else
//!    `~/.cache/contrastive`), with the interpreter named by `$CONTRASTIVE_PYTHON` or `python3`.
//!
//! The choice is recorded as the link `<workspace>/.libtorch`, which `.cargo/config.toml`
//! hands to tch's build script (`LIBTORCH`) and the linker wrapper writes into every binary
//! as its run path, so plain `cargo build` and `cargo test` work afterwards.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use contrastive_data::download::cache_root;

/// The libtorch version tch 0.26 requires.
pub const TORCH_VERSION: &str = "2.13.0";
/// Name of the link, in the workspace root, to the libtorch in use.
pub(crate) const LINK_NAME: &str = ".libtorch";
/// Written into a virtual environment once torch is fully installed in it.
const COMPLETE_MARKER: &str = ".contrastive-torch-complete";

/// Makes sure `<root>/.libtorch` points at libtorch 2.13.0 and returns the folder it points at.
pub fn setup(root: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    let link = root.join(LINK_NAME);
    // `cargo xtask` itself runs with LIBTORCH=<root>/.libtorch from .cargo/config.toml; only a
    // different value is the user's own choice.
    let user_choice = env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .filter(|dir| *dir != link);

    let (dir, source) = if let Some(dir) = user_choice {
        check_libtorch(&dir).with_context(|| {
            format!(
                "LIBTORCH={} is not usable; unset it to let setup install libtorch {TORCH_VERSION}, \
                 or point it at a libtorch {TORCH_VERSION} folder",
                dir.display()
            )
        })?;
        (dir, "LIBTORCH from the environment")
    } else if check_libtorch(&link).is_ok() {
        let dir = fs::canonicalize(&link).unwrap_or(link.clone());
        println!(
            "setup: libtorch {TORCH_VERSION} ready at {} ({:.1?})",
            dir.display(),
            start.elapsed()
        );
        return Ok(dir);
    } else {
        let cache = cache_root(&|key| env::var_os(key))
            .context("no cache folder: set CONTRASTIVE_CACHE_DIR (or HOME)")?;
        let venv = cache.join(format!("torch-{TORCH_VERSION}"));
        if let Some(dir) = completed_venv_torch(&venv) {
            (dir, "the cached virtual environment")
        } else if let Some(dir) = python_torch(&python_program())? {
            (dir, "torch installed in python3")
        } else {
            (
                install_into_venv(&python_program(), &venv)?,
                "a fresh pip install",
            )
        }
    };
    let replaced = relink(&link, &dir)?;
    if replaced && root.join("target").exists() {
        // tch's build script only reruns when LIBTORCH's value changes, and the value
        // (`.libtorch`) stays the same: rebuild it against the new target.
        println!("setup: libtorch changed, cleaning the crates built against the old one");
        crate::run_command(
            root,
            "cargo",
            &[
                "clean",
                "--quiet",
                "-p",
                "torch-sys",
                "-p",
                "contrastive-tensor",
            ],
        )?;
    }
    println!(
        "setup: libtorch {TORCH_VERSION} from {source} at {}, linked as {LINK_NAME} ({:.1?})",
        dir.display(),
        start.elapsed()
    );
    Ok(dir)
}

/// Checks that `dir` is a libtorch of the required version and returns that version.
///
/// A libtorch folder has `lib/libtorch_cpu.so`, `include/torch/` and a version: the file
/// `build-version` (libtorch archives) or `version.py` (the torch Python package).
pub fn check_libtorch(dir: &Path) -> Result<String> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    let library = dir.join("lib").join(shared_library("torch_cpu"));
    if !library.is_file() {
        bail!(
            "{} is not a libtorch folder: {} is missing",
            dir.display(),
            library.display()
        );
    }
    if !dir.join("include").join("torch").is_dir() {
        bail!(
            "{} has no C++ headers (include/torch); tch needs them to build",
            dir.display()
        );
    }
    let version = read_version(dir)?;
    if version != TORCH_VERSION {
        bail!(
            "{} holds libtorch {version}, but tch 0.26 needs exactly {TORCH_VERSION}",
            dir.display()
        );
    }
    Ok(version)
}

/// The version of a libtorch folder, without a local tag (`2.13.0+cu130` -> `2.13.0`).
fn read_version(dir: &Path) -> Result<String> {
    let archive = dir.join("build-version");
    let text = if archive.is_file() {
        fs::read_to_string(&archive)?
    } else {
        let module = dir.join("version.py");
        let source = fs::read_to_string(&module).with_context(|| {
            format!(
                "cannot tell the libtorch version of {}: no build-version or version.py",
                dir.display()
            )
        })?;
        parse_version_py(&source)
            .with_context(|| format!("no `__version__ = '...'` line in {}", module.display()))?
    };
    Ok(strip_local_tag(text.trim()).to_owned())
}

/// The value of `__version__` in torch's `version.py`.
fn parse_version_py(source: &str) -> Option<String> {
    source.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("__version__")?
            .trim_start()
            .strip_prefix('=')?;
        Some(
            value
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_owned(),
        )
    })
}

fn strip_local_tag(version: &str) -> &str {
    version.split_once('+').map_or(version, |(v, _)| v)
}

fn shared_library(name: &str) -> String {
    if cfg!(target_os = "macos") {
        format!("lib{name}.dylib")
    } else {
        format!("lib{name}.so")
    }
}

/// The Python interpreter used to create the virtual environment.
pub fn python_program() -> OsString {
    env::var_os("CONTRASTIVE_PYTHON").unwrap_or_else(|| "python3".into())
}

/// The torch folder of a virtual environment that a previous setup completed.
fn completed_venv_torch(venv: &Path) -> Option<PathBuf> {
    let dir = PathBuf::from(fs::read_to_string(venv.join(COMPLETE_MARKER)).ok()?.trim());
    check_libtorch(&dir).ok().map(|_| dir)
}

/// The torch folder of `python`'s own torch, when it is version 2.13.0; `None` when that
/// Python has no torch or another version. Finds the package without importing it (fast).
fn python_torch(python: &OsString) -> Result<Option<PathBuf>> {
    let Ok(output) = Command::new(python)
        .args(["-c", "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"])
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(None);
    };
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || dir.is_empty() {
        return Ok(None);
    }
    let dir = PathBuf::from(dir);
    Ok(check_libtorch(&dir).ok().map(|_| dir))
}

/// Checks that `python` runs and returns its version (`3.11.7`), or explains how to get one.
pub fn check_python(python: &OsString) -> Result<String> {
    let output = Command::new(python).arg("--version").output();
    match output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            Ok(text.trim().trim_start_matches("Python ").to_owned())
        }
        _ => bail!(
            "`{}` was not found or does not run. libtorch is installed from PyPI, which needs \
             Python 3.10 or newer with venv and pip: on Debian/Ubuntu `apt-get install python3 \
             python3-venv python3-pip`; or set CONTRASTIVE_PYTHON to another interpreter; or \
             set LIBTORCH to an existing libtorch {TORCH_VERSION} folder",
            python.to_string_lossy()
        ),
    }
}

/// The Python of the virtual environment `venv`, created with `python` when missing and
/// checked to have pip.
pub fn ensure_venv(python: &OsString, venv: &Path) -> Result<PathBuf> {
    let version = check_python(python)?;
    let venv_python = venv.join("bin").join("python");
    if !venv_python.exists() {
        println!(
            "setup: creating a virtual environment at {} (Python {version})",
            venv.display()
        );
        fs::create_dir_all(venv.parent().unwrap_or(venv))
            .with_context(|| format!("cannot create the cache folder for {}", venv.display()))?;
        let out = Command::new(python)
            .arg("-m")
            .arg("venv")
            .arg(venv)
            .output()?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(venv);
            bail!(
                "`{} -m venv` failed: {}\nThe venv module is missing: on Debian/Ubuntu \
                 `apt-get install python3-venv`",
                python.to_string_lossy(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let pip_ok = Command::new(&venv_python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip_ok {
        bail!(
            "the virtual environment {} has no pip: on Debian/Ubuntu `apt-get install \
             python3-venv python3-pip`, then delete that folder and run `cargo xtask setup` again",
            venv.display()
        );
    }
    Ok(venv_python)
}

/// Creates (or completes) the virtual environment `venv` and pip-installs torch 2.13.0 in it.
fn install_into_venv(python: &OsString, venv: &Path) -> Result<PathBuf> {
    let version = check_python(python)?;
    let venv_python = ensure_venv(python, venv)?;
    println!(
        "setup: pip install torch=={TORCH_VERSION} into {} (about 5 GB with its CUDA libraries; \
         a few minutes)",
        venv.display()
    );
    let status = Command::new(&venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            &format!("torch=={TORCH_VERSION}"),
        ])
        .status()?;
    if !status.success() {
        bail!(
            "pip could not install torch=={TORCH_VERSION} (its output is above). PyPI has torch \
             {TORCH_VERSION} wheels for 64-bit Linux, macOS and Windows on CPython 3.10 and newer; \
             this environment uses Python {version}"
        );
    }
    let dir = python_torch(&venv_python.into_os_string())?.with_context(|| {
        format!(
            "pip reported success but no usable torch {TORCH_VERSION} is in {}",
            venv.display()
        )
    })?;
    fs::write(venv.join(COMPLETE_MARKER), dir.to_string_lossy().as_bytes())?;
    Ok(dir)
}

/// Points `link` at `target` (atomically replacing an older link). Returns whether a link to
/// another folder was replaced. Refuses to replace a real folder or file.
pub fn relink(link: &Path, target: &Path) -> Result<bool> {
    let mut replaced = false;
    if let Ok(meta) = fs::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            bail!(
                "{} is a real file or folder, not a link; move it away (or set LIBTORCH to it) \
                 and run `cargo xtask setup` again",
                link.display()
            );
        }
        if fs::read_link(link)? == target {
            return Ok(false);
        }
        replaced = true;
    }
    let temp = link.with_extension("new");
    let _ = fs::remove_file(&temp);
    symlink_dir(target, &temp)
        .with_context(|| format!("cannot create the link {}", temp.display()))?;
    fs::rename(&temp, link).with_context(|| format!("cannot replace {}", link.display()))?;
    Ok(replaced)
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out the files `check_libtorch` looks at, as the torch Python package has them.
    fn fake_torch_package(dir: &Path, version: &str) {
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::create_dir_all(dir.join("include/torch")).unwrap();
        fs::write(dir.join("lib").join(shared_library("torch_cpu")), b"").unwrap();
        fs::write(
            dir.join("version.py"),
            format!("__version__ = '{version}'\ngit_version = 'x'\n"),
        )
        .unwrap();
    }

    #[test]
    fn version_py_and_local_tags_are_read() {
        let source = "from typing import Optional\n__version__ = '2.13.0+cu130'\ndebug = False\n";
        assert_eq!(parse_version_py(source).as_deref(), Some("2.13.0+cu130"));
        assert_eq!(strip_local_tag("2.13.0+cu130"), "2.13.0");
        assert_eq!(strip_local_tag("2.13.0"), "2.13.0");
        assert_eq!(parse_version_py("version = 3"), None);
    }

    #[test]
    fn accepts_the_right_version_and_names_the_wrong_one() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good");
        fake_torch_package(&good, "2.13.0+cpu");
        assert_eq!(check_libtorch(&good).unwrap(), "2.13.0");

        let old = tmp.path().join("old");
        fake_torch_package(&old, "2.12.1");
        let message = check_libtorch(&old).unwrap_err().to_string();
        assert!(
            message.contains("2.12.1") && message.contains("2.13.0"),
            "{message}"
        );

        let archive = tmp.path().join("archive");
        fake_torch_package(&archive, "unused");
        fs::remove_file(archive.join("version.py")).unwrap();
        fs::write(archive.join("build-version"), "2.13.0+cu128\n").unwrap();
        assert_eq!(check_libtorch(&archive).unwrap(), "2.13.0");
    }

    #[test]
    fn names_what_is_missing_from_a_libtorch_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let message = check_libtorch(tmp.path()).unwrap_err().to_string();
        assert!(message.contains("libtorch_cpu"), "{message}");

        let headless = tmp.path().join("headless");
        fake_torch_package(&headless, "2.13.0");
        fs::remove_dir_all(headless.join("include")).unwrap();
        let message = check_libtorch(&headless).unwrap_err().to_string();
        assert!(message.contains("include/torch"), "{message}");

        let message = check_libtorch(&tmp.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_missing_python_is_explained() {
        let message = check_python(&OsString::from("/nonexistent/python3"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("not found") && message.contains("python3-venv"),
            "{message}"
        );
    }

    #[test]
    fn a_real_python_reports_its_version() {
        // The machine's own python3 (CI installs one); its version starts with "3.".
        let version = check_python(&OsString::from("python3")).unwrap();
        assert!(version.starts_with("3."), "{version}");
    }

    #[test]
    fn relink_replaces_links_but_never_real_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let link = tmp.path().join(".libtorch");
        assert!(!relink(&link, &a).unwrap(), "a new link replaces nothing");
        assert_eq!(fs::read_link(&link).unwrap(), a);
        assert!(
            !relink(&link, &a).unwrap(),
            "same target: nothing to change"
        );
        assert!(
            relink(&link, &b).unwrap(),
            "another target replaces the old link"
        );
        assert_eq!(fs::read_link(&link).unwrap(), b);

        let real = tmp.path().join("real");
        fs::create_dir_all(&real).unwrap();
        let message = relink(&real, &a).unwrap_err().to_string();
        assert!(message.contains("not a link"), "{message}");
        assert!(real.is_dir());
    }
}
