//! `cargo xtask download <dataset>`: finds a verified local copy of a standard dataset or
//! downloads it, and says which source it used.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use contrastive_data::download::{self, Origin, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// The Debian package that ships a dataset, where there is one.
fn debian_package(name: &str) -> Option<&'static str> {
    (name == "fashion-mnist").then_some("dataset-fashion-mnist")
}

/// Makes `name` available and returns its folder.
pub fn run(name: &str, data_dir: Option<PathBuf>) -> Result<PathBuf> {
    let spec = download::dataset_spec(name)?;
    let root = match data_dir {
        Some(dir) => dir,
        None => download::data_root(&|key| std::env::var_os(key))
            .context("no data folder: set CONTRASTIVE_DATA_DIR (or HOME)")?,
    };
    match download::find_existing(&spec, &root) {
        Ok(Some((dir, origin))) => {
            report(name, &dir, &origin);
            return Ok(dir);
        }
        Ok(None) => {}
        // Downloading again repairs it: damaged files fail their checksum and are fetched
        // again, archives are unpacked again.
        Err(err) => eprintln!("download: {err}"),
    }
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut current = String::new();
    let mut on_progress = |p: Progress<'_>| {
        if current != p.file {
            current = p.file.to_owned();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_message(p.file.to_owned());
            bar.set_length(p.total.unwrap_or(0));
        }
        bar.set_position(p.done);
    };
    let downloaded = download::download(&spec, &root, &mut on_progress);
    bar.finish_and_clear();
    match downloaded {
        Ok((dir, origin)) => {
            report(name, &dir, &origin);
            Ok(dir)
        }
        Err(err) => {
            let Some(package) = debian_package(name) else {
                return Err(err).with_context(|| format!("downloading {name}"));
            };
            eprintln!("download: {err}");
            eprintln!("download: trying the Debian package {package}");
            install_debian_package(package)
                .with_context(|| format!("no source of {name} worked"))?;
            let (dir, origin) = download::find_existing(&spec, &root)?
                .with_context(|| format!("{package} is installed but its files do not verify"))?;
            report(name, &dir, &origin);
            Ok(dir)
        }
    }
}

fn report(name: &str, dir: &Path, origin: &Origin) {
    let source = match origin {
        Origin::Cache => "a verified earlier download".to_string(),
        Origin::Local(path) => format!("the verified local copy in {}", path.display()),
        Origin::Downloaded(urls) => format!("downloaded from {}", urls.join(", ")),
    };
    println!(
        "download: {name} ready in {} (source: {source})",
        dir.display()
    );
}

/// `apt-get install -y <package>`, only as root on a Debian-family system.
fn install_debian_package(package: &str) -> Result<()> {
    if !Path::new("/etc/debian_version").exists() {
        bail!("this is not a Debian-family system, so {package} cannot be installed");
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("installing {package} needs root: run `sudo apt-get install {package}`");
    }
    let env: [(&str, OsString); 1] = [("DEBIAN_FRONTEND", "noninteractive".into())];
    for args in [&["update", "-q"][..], &["install", "-y", "-q", package][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .envs(env.clone())
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status})", args.join(" "));
        }
    }
    Ok(())
}
