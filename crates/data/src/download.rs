//! Fetching the standard datasets: a catalog of official URLs and mirrors with published
//! SHA-256 checksums, resumable HTTP downloads, verification and archive extraction.
//!
//! Checksums and sizes of the archives are those recorded by TensorFlow Datasets
//! (`tensorflow_datasets/url_checksums/{mnist,fashion_mnist,cifar10,cifar100,stl10}.txt`).
//! Fashion-MNIST's content checksums (of the decompressed IDX files) were computed here from
//! Debian's `dataset-fashion-mnist` package, whose gzip files differ from the originals only
//! in their headers.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One file of a dataset, with everywhere it can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name on disk.
    pub name: String,
    /// Size in bytes, when published.
    pub size: Option<u64>,
    /// SHA-256 of the file as published (lowercase hex).
    pub sha256: String,
    /// SHA-256 of the decompressed content of a `.gz` file, accepted for local copies that
    /// were recompressed (lowercase hex).
    pub content_sha256: Option<String>,
    /// URLs to try in order: the official one first, then mirrors.
    pub urls: Vec<String>,
}

/// A downloadable dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Its name on the command line (`fashion-mnist`).
    pub name: &'static str,
    /// The files to fetch.
    pub files: Vec<RemoteFile>,
    /// Whether the files are `.tar.gz` archives to unpack.
    pub archive: bool,
    /// Folders where a system package may have put the files already.
    pub local_dirs: Vec<PathBuf>,
}

/// Names of the datasets in the catalog.
pub const DATASETS: [&str; 5] = ["fashion-mnist", "mnist", "cifar10", "cifar100", "stl10"];

fn remote(name: &str, size: u64, sha256: &str, bases: &[&str]) -> RemoteFile {
    RemoteFile {
        name: name.to_owned(),
        size: Some(size),
        sha256: sha256.to_owned(),
        content_sha256: None,
        urls: bases.iter().map(|b| format!("{b}/{name}")).collect(),
    }
}

/// The catalog entry for `name`.
pub fn dataset_spec(name: &str) -> Result<DatasetSpec> {
    let spec = match name {
        "fashion-mnist" => {
            let bases = [
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
            ];
            let files = [
                (
                    "train-images-idx3-ubyte.gz",
                    26_421_880,
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    29_515,
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    4_422_102,
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    5_148,
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ];
            DatasetSpec {
                name: "fashion-mnist",
                files: files
                    .iter()
                    .map(|(n, size, sha, content)| RemoteFile {
                        content_sha256: Some((*content).to_owned()),
                        ..remote(n, *size, sha, &bases)
                    })
                    .collect(),
                archive: false,
                local_dirs: vec![PathBuf::from("/usr/share/datasets/fashion-mnist")],
            }
        }
        "mnist" => {
            let bases = [
                "https://ossci-datasets.s3.amazonaws.com/mnist",
                "https://storage.googleapis.com/cvdf-datasets/mnist",
            ];
            DatasetSpec {
                name: "mnist",
                files: vec![
                    remote(
                        "train-images-idx3-ubyte.gz",
                        9_912_422,
                        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                        &bases,
                    ),
                    remote(
                        "train-labels-idx1-ubyte.gz",
                        28_881,
                        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                        &bases,
                    ),
                    remote(
                        "t10k-images-idx3-ubyte.gz",
                        1_648_877,
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                        &bases,
                    ),
                    remote(
                        "t10k-labels-idx1-ubyte.gz",
                        4_542,
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                        &bases,
                    ),
                ],
                archive: false,
                local_dirs: vec![PathBuf::from("/usr/share/datasets/mnist")],
            }
        }
        "cifar10" => DatasetSpec {
            name: "cifar10",
            files: vec![remote(
                "cifar-10-binary.tar.gz",
                170_052_171,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                &["https://www.cs.toronto.edu/~kriz"],
            )],
            archive: true,
            local_dirs: vec![],
        },
        "cifar100" => DatasetSpec {
            name: "cifar100",
            files: vec![remote(
                "cifar-100-binary.tar.gz",
                168_513_733,
                "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
                &["https://www.cs.toronto.edu/~kriz"],
            )],
            archive: true,
            local_dirs: vec![],
        },
        "stl10" => DatasetSpec {
            name: "stl10",
            files: vec![remote(
                "stl10_binary.tar.gz",
                2_640_397_119,
                "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866",
                &["http://ai.stanford.edu/~acoates/stl10"],
            )],
            archive: true,
            local_dirs: vec![],
        },
        other => return Err(Error::UnknownDataset(other.to_owned())),
    };
    Ok(spec)
}

/// The cache root: `$CONTRASTIVE_CACHE_DIR`, else `$XDG_CACHE_HOME/contrastive`, else
/// `$HOME/.cache/contrastive`. `var` looks up environment variables (a parameter so callers
/// and tests can supply their own).
pub fn cache_root(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("CONTRASTIVE_CACHE_DIR")
        .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("contrastive")))
        .or_else(|| set("HOME").map(|h| h.join(".cache").join("contrastive")))
}

/// The data folder: `$CONTRASTIVE_DATA_DIR`, else `<cache root>/data`.
pub fn data_root(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    var("CONTRASTIVE_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| cache_root(var).map(|c| c.join("data")))
}

/// Where a dataset was found or fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A verified earlier download in the data folder.
    Cache,
    /// Verified files a system package installed (the folder).
    Local(PathBuf),
    /// Downloaded now (the URL of each file).
    Downloaded(Vec<String>),
}

/// A download's progress, reported as bytes arrive.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The file being fetched.
    pub file: &'a str,
    /// The URL it comes from.
    pub url: &'a str,
    /// Bytes on disk so far (including a resumed part).
    pub done: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
}

const COMPLETE: &str = ".complete";

/// The folder holding `spec`'s files when a verified copy exists already: a completed
/// download in `data_root/<name>`, or a system copy in one of `spec.local_dirs`. A
/// completed download is checked against the SHA-256 of every file it held when it
/// completed (recorded in its `.complete` marker); one that no longer verifies is
/// [`Error::DamagedCache`], naming the file and the command that repairs it.
pub fn find_existing(spec: &DatasetSpec, data_root: &Path) -> Result<Option<(PathBuf, Origin)>> {
    let cached = data_root.join(spec.name);
    let marker = cached.join(COMPLETE);
    if marker.is_file() {
        verify_cache(spec, &cached, &marker)?;
        return Ok(Some((cached, Origin::Cache)));
    }
    Ok(spec
        .local_dirs
        .iter()
        .find(|dir| {
            spec.files
                .iter()
                .all(|f| local_copy_matches(&dir.join(&f.name), f))
        })
        .map(|dir| (dir.clone(), Origin::Local(dir.clone()))))
}

/// Checks a completed download in `dir` against its marker's manifest (`<sha256>  <path>`
/// per line). A marker from before manifests (empty) is checked against the published
/// SHA-256 of the downloaded files themselves.
fn verify_cache(spec: &DatasetSpec, dir: &Path, marker: &Path) -> Result<()> {
    let manifest = fs::read_to_string(marker).map_err(|e| Error::io(marker, e))?;
    let mut expected: Vec<(String, String)> = manifest
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(sha, file)| (file.to_owned(), sha.to_owned()))
        .collect();
    if expected.is_empty() {
        expected = spec
            .files
            .iter()
            .map(|f| (f.name.clone(), f.sha256.clone()))
            .collect();
    }
    for (file, sha) in expected {
        let path = dir.join(&file);
        let why = if !path.is_file() {
            "is missing"
        } else if sha256_file(&path)? != sha {
            "does not have the SHA-256 it had when it was downloaded"
        } else {
            continue;
        };
        return Err(Error::DamagedCache {
            name: spec.name.to_owned(),
            dir: dir.to_path_buf(),
            file,
            why: why.to_owned(),
        });
    }
    Ok(())
}

/// Writes the marker of a completed download in `dir`: the SHA-256 of every file in it
/// (sub-folders included), written to a temporary file and renamed into place.
fn write_manifest(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let path = entry.map_err(|e| Error::io(&folder, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name
                .as_deref()
                .is_some_and(|n| n.starts_with('.') || n.ends_with(".part"))
            {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    let mut manifest = String::new();
    for file in files {
        manifest.push_str(&format!("{}  {file}\n", sha256_file(&dir.join(&file))?));
    }
    let temp = dir.join(format!("{COMPLETE}.tmp"));
    fs::write(&temp, manifest)
        .and_then(|()| fs::rename(&temp, dir.join(COMPLETE)))
        .map_err(|e| Error::io(dir.join(COMPLETE), e))
}

/// Whether `path` holds `file`: its SHA-256 is the published one, or, for recompressed
/// gzip files, the SHA-256 of its content is.
fn local_copy_matches(path: &Path, file: &RemoteFile) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    if hex_sha256(&bytes) == file.sha256 {
        return true;
    }
    match &file.content_sha256 {
        Some(content) => {
            crate::idx::gunzip(path, &bytes).is_ok_and(|raw| hex_sha256(&raw) == *content)
        }
        None => false,
    }
}

/// Fetches every file of `spec` into `data_root/<name>`, verifies it, unpacks archives, and
/// marks the folder complete. Files already there and verified are not fetched again.
pub fn download(
    spec: &DatasetSpec,
    data_root: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(PathBuf, Origin)> {
    let dir = data_root.join(spec.name);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut urls = Vec::new();
    for file in &spec.files {
        urls.push(fetch_file(file, &dir, progress)?);
        if spec.archive {
            unpack_tar_gz(&dir.join(&file.name), &dir)?;
        }
    }
    write_manifest(&dir)?;
    Ok((dir, Origin::Downloaded(urls)))
}

/// Attempts per URL before moving to the next: a cut connection resumes where it stopped.
const TRIES_PER_URL: usize = 3;

/// Fetches one file into `dir` (resuming a `.part` left by an interrupted run), trying each
/// URL in turn, and verifies its SHA-256. Returns the URL it came from (or `"cache"` when a
/// verified copy was there already). A file with the wrong checksum is deleted, never kept.
pub fn fetch_file(
    file: &RemoteFile,
    dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<String> {
    let dest = dir.join(&file.name);
    if dest.is_file() && sha256_file(&dest)? == file.sha256 {
        return Ok("cache".into());
    }
    let part = dir.join(format!("{}.part", file.name));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut attempts = Vec::new();
    for url in &file.urls {
        let mut fetched = false;
        for _ in 0..TRIES_PER_URL {
            match fetch_into(&agent, url, &part, file, progress) {
                Ok(()) => {
                    fetched = true;
                    break;
                }
                Err(Attempt::Retry(message)) => {
                    attempts.push(format!("{url}: {message} (will resume)"))
                }
                Err(Attempt::GiveUp(message)) => {
                    attempts.push(format!("{url}: {message}"));
                    break;
                }
            }
        }
        if !fetched {
            continue;
        }
        let actual = sha256_file(&part)?;
        if actual == file.sha256 {
            fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
            return Ok(url.clone());
        }
        let _ = fs::remove_file(&part);
        let mismatch = Error::ChecksumMismatch {
            url: url.clone(),
            expected: file.sha256.clone(),
            actual,
        };
        tracing::warn!("{mismatch}");
        attempts.push(mismatch.to_string());
    }
    Err(Error::AllSourcesFailed {
        file: file.name.clone(),
        attempts,
    })
}

enum Attempt {
    /// A transient failure (connection cut): try the same URL again, resuming.
    Retry(String),
    /// This URL will not work (404, refused): go to the next one.
    GiveUp(String),
}

/// One HTTP request appending to `part` from its current length.
fn fetch_into(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    file: &RemoteFile,
    progress: &mut dyn FnMut(Progress<'_>),
) -> std::result::Result<(), Attempt> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if file.size.is_some_and(|size| have >= size) {
        return Ok(());
    }
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| match e {
        ureq::Error::Io(_) | ureq::Error::Timeout(_) => Attempt::Retry(e.to_string()),
        other => Attempt::GiveUp(other.to_string()),
    })?;
    let status = response.status().as_u16();
    let (mut out, start) = match status {
        206 if have > 0 => (open_part(part, true)?, have),
        200 => (open_part(part, false)?, 0),
        416 if have > 0 => return Ok(()),
        429 | 500..=599 => return Err(Attempt::Retry(format!("HTTP {status}"))),
        _ => return Err(Attempt::GiveUp(format!("HTTP {status}"))),
    };
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let total = file.size.or(length.map(|l| l + start));
    let mut reader = response.into_body().into_reader();
    let mut done = start;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Attempt::Retry(format!(
                    "connection lost after {done} bytes: {e}"
                )));
            }
        };
        out.write_all(&buffer[..n])
            .map_err(|e| Attempt::GiveUp(format!("writing {}: {e}", part.display())))?;
        done += n as u64;
        progress(Progress {
            file: &file.name,
            url,
            done,
            total,
        });
    }
    out.sync_all()
        .map_err(|e| Attempt::GiveUp(format!("writing {}: {e}", part.display())))?;
    match total {
        Some(total) if done < total => Err(Attempt::Retry(format!(
            "connection closed at {done} of {total} bytes"
        ))),
        _ => Ok(()),
    }
}

fn open_part(part: &Path, append: bool) -> std::result::Result<File, Attempt> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| Attempt::GiveUp(format!("opening {}: {e}", part.display())))
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// SHA-256 of bytes, lowercase hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpacks a `.tar.gz` into `dest`, through a temporary folder so that an interrupted
/// extraction never leaves half a dataset in place.
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<()> {
    let staging = dest.join(".unpacking");
    let _ = fs::remove_dir_all(&staging);
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)))
        .unpack(&staging)
        .map_err(|e| Error::Gzip {
            path: archive.to_path_buf(),
            message: e.to_string(),
        })?;
    for entry in fs::read_dir(&staging).map_err(|e| Error::io(&staging, e))? {
        let from = entry.map_err(|e| Error::io(&staging, e))?.path();
        let to = dest.join(from.file_name().expect("entries have names"));
        if to.exists() {
            fs::remove_dir_all(&to)
                .or_else(|_| fs::remove_file(&to))
                .map_err(|e| Error::io(&to, e))?;
        }
        fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_and_data_folders_honour_overrides_then_xdg_then_home() {
        let all = env(&[
            ("CONTRASTIVE_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(cache_root(&all), Some(PathBuf::from("/c")));
        assert_eq!(data_root(&all), Some(PathBuf::from("/c/data")));
        let xdg = env(&[
            ("CONTRASTIVE_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(cache_root(&xdg), Some(PathBuf::from("/x/contrastive")));
        let home = env(&[("HOME", "/h"), ("CONTRASTIVE_DATA_DIR", "/d")]);
        assert_eq!(
            cache_root(&home),
            Some(PathBuf::from("/h/.cache/contrastive"))
        );
        assert_eq!(data_root(&home), Some(PathBuf::from("/d")));
        assert_eq!(cache_root(&env(&[])), None);
    }

    #[test]
    fn the_catalog_knows_every_listed_dataset() {
        for name in DATASETS {
            let spec = dataset_spec(name).unwrap();
            assert!(!spec.files.is_empty());
            for file in &spec.files {
                assert_eq!(file.sha256.len(), 64, "{name}/{}", file.name);
                assert!(
                    file.urls.iter().all(|u| u.ends_with(&file.name)),
                    "{name}/{}",
                    file.name
                );
            }
        }
        assert!(matches!(
            dataset_spec("imagenet"),
            Err(Error::UnknownDataset(_))
        ));
    }
}
