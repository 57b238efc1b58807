//! CIFAR-10 and CIFAR-100 in their binary versions (Krizhevsky, 2009).
//!
//! Each record is the label byte(s) then 3072 bytes of pixels: the red plane, the green plane
//! and the blue plane, each 32 x 32 in row-major order. CIFAR-10 has one label byte; CIFAR-100
//! has two (coarse, then fine).

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, InMemoryDataset, Result, Split};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const PIXELS: usize = 3 * PLANE;

/// The 10 CIFAR-10 classes, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which CIFAR-100 label to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar100Label {
    /// The 20 superclasses.
    Coarse,
    /// The 100 classes.
    Fine,
}

/// CIFAR-10 from `dir`: the `cifar-10-batches-bin` folder, or a folder containing it.
pub fn cifar10(dir: impl AsRef<Path>, split: Split) -> Result<InMemoryDataset> {
    let dir = locate(dir.as_ref(), "cifar-10-batches-bin");
    let files: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
        Split::Unlabeled => {
            return Err(Error::InvalidOption(
                "CIFAR-10 has no unlabeled split".into(),
            ));
        }
    };
    let names = read_names(&dir.join("batches.meta.txt"))
        .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    read_cifar_files(&files, 1, 0, names)
}

/// CIFAR-100 from `dir`: the `cifar-100-binary` folder, or a folder containing it.
pub fn cifar100(
    dir: impl AsRef<Path>,
    split: Split,
    label: Cifar100Label,
) -> Result<InMemoryDataset> {
    let dir = locate(dir.as_ref(), "cifar-100-binary");
    let file = match split {
        Split::Train => dir.join("train.bin"),
        Split::Test => dir.join("test.bin"),
        Split::Unlabeled => {
            return Err(Error::InvalidOption(
                "CIFAR-100 has no unlabeled split".into(),
            ));
        }
    };
    let (index, names_file, count) = match label {
        Cifar100Label::Coarse => (0, "coarse_label_names.txt", 20),
        Cifar100Label::Fine => (1, "fine_label_names.txt", 100),
    };
    let names = read_names(&dir.join(names_file))
        .unwrap_or_else(|| (0..count).map(|i| format!("class {i}")).collect());
    read_cifar_files(&[file], 2, index, names)
}

/// Reads CIFAR binary files whose records have `label_bytes` label bytes, using the one at
/// `label_index`, into `[32, 32, 3]` images.
pub fn read_cifar_files(
    files: &[PathBuf],
    label_bytes: usize,
    label_index: usize,
    class_names: Vec<String>,
) -> Result<InMemoryDataset> {
    let record = label_bytes + PIXELS;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in files {
        let bytes = fs::read(file).map_err(|e| Error::io(file, e))?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
            return Err(Error::format(
                file,
                format!(
                    "{} bytes is not a whole number of {record}-byte CIFAR records \
                     ({label_bytes} label byte(s) + {PIXELS} pixels)",
                    bytes.len()
                ),
            ));
        }
        pixels.reserve(bytes.len() / record * PIXELS);
        for rec in bytes.chunks_exact(record) {
            labels.push(u16::from(rec[label_index]));
            let planes = &rec[label_bytes..];
            // Planes R, G, B -> interleaved HWC.
            for i in 0..PLANE {
                pixels.extend_from_slice(&[planes[i], planes[PLANE + i], planes[2 * PLANE + i]]);
            }
        }
    }
    let first = files.first().cloned().unwrap_or_default();
    InMemoryDataset::new(pixels, [SIDE, SIDE, 3], Some(labels), class_names, first)
}

/// `dir/inner` when it exists, else `dir`.
pub(crate) fn locate(dir: &Path, inner: &str) -> PathBuf {
    let nested = dir.join(inner);
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Non-empty lines of a class-names file, when it exists.
pub(crate) fn read_names(path: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(path).ok()?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    (!names.is_empty()).then_some(names)
}
