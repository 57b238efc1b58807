//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! An IDX file is a magic number `00 00 TT NN` (element type `TT`, `NN` dimensions), then `NN`
//! big-endian `u32` sizes, then the elements. Images are `[N, rows, cols]` of `u8` (type
//! `0x08`), labels `[N]` of `u8`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::{Error, InMemoryDataset, Result, Split};

/// The 10 Fashion-MNIST classes, by label (Xiao, Rasul and Vollgraf, 2017).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The decoded content of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes of each dimension.
    pub dims: Vec<usize>,
    /// The elements, in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, gzip-compressed or not (told by its first bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let raw = fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(path, &raw)?
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Decompresses a whole gzip file, sizing the buffer from its trailer.
pub(crate) fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    // The last 4 bytes hold the uncompressed size modulo 2^32: a good first capacity.
    let hint = raw
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes(raw[at..].try_into().expect("4 bytes")) as usize)
        .unwrap_or(0);
    let mut out = Vec::with_capacity(hint.min(1 << 31));
    GzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| Error::Gzip {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(out)
}

fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(Error::format(
            path,
            format!("not an IDX file: magic {}", head.join(" ")),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
                bytes[2]
            ),
        ));
    }
    let ndims = usize::from(bytes[3]);
    if ndims == 0 || ndims > 4 {
        return Err(Error::format(
            path,
            format!("IDX with {ndims} dimensions (expected 1 to 4)"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(Error::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let found = bytes.len() - header;
    match expected {
        Some(n) if n == found => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
        Some(n) => Err(Error::format(
            path,
            format!("dimensions {dims:?} need {n} bytes of data, the file has {found}"),
        )),
        None => Err(Error::format(path, format!("dimensions {dims:?} overflow"))),
    }
}

/// Reads an images file `[N, H, W]` and a labels file `[N]` into a dataset of `N` gray
/// images `[H, W, 1]`.
pub fn read_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    class_names: Vec<String>,
) -> Result<InMemoryDataset> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    let (images, labels) = rayon::join(|| read_idx(images_path), || read_idx(labels_path));
    let (images, labels) = (images?, labels?);
    if images.dims.len() != 3 {
        return Err(Error::format(
            images_path,
            format!(
                "images need 3 dimensions [N, rows, cols], found {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::format(
            labels_path,
            format!("labels need 1 dimension [N], found {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.dims[0],
            labels_path: labels_path.to_path_buf(),
            labels: labels.dims[0],
        });
    }
    if let Some(bad) = labels
        .data
        .iter()
        .find(|&&l| usize::from(l) >= class_names.len())
    {
        return Err(Error::format(
            labels_path,
            format!(
                "label {bad} is out of range for {} classes",
                class_names.len()
            ),
        ));
    }
    let labels = labels.data.into_iter().map(u16::from).collect();
    InMemoryDataset::new(
        images.data,
        [images.dims[1], images.dims[2], 1],
        Some(labels),
        class_names,
        images_path,
    )
}

/// Fashion-MNIST from a folder holding its four original files (gzip-compressed or not).
pub fn fashion_mnist(dir: impl AsRef<Path>, split: Split) -> Result<InMemoryDataset> {
    mnist_like(
        dir.as_ref(),
        split,
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

/// MNIST from a folder holding its four original files (gzip-compressed or not).
pub fn mnist(dir: impl AsRef<Path>, split: Split) -> Result<InMemoryDataset> {
    mnist_like(
        dir.as_ref(),
        split,
        (0..10).map(|d| d.to_string()).collect(),
    )
}

fn mnist_like(dir: &Path, split: Split, class_names: Vec<String>) -> Result<InMemoryDataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
        Split::Unlabeled => {
            return Err(Error::InvalidOption(
                "MNIST-style sets have no unlabeled split".into(),
            ));
        }
    };
    let images = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    read_idx_pair(images, labels, class_names)
}

/// `dir/name.gz` or `dir/name`, whichever exists.
fn find_idx(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    [gz.clone(), raw]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::io(
                gz,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "file not found (nor without .gz)",
                ),
            )
        })
}
