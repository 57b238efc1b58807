//! STL-10 in its binary version (Coates, Lee and Ng, 2011): 96 x 96 colour images; 5000
//! labeled training images, 8000 test images and 100 000 unlabeled ones.
//!
//! `*_X.bin` holds images of 3 x 96 x 96 bytes, each channel plane in column-major order;
//! `*_y.bin` holds one label byte per image, from 1 to 10. Images are read from the file on
//! demand (the unlabeled split is 2.7 GB), never all at once.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cifar::{locate, read_names};
use crate::dataset::check_index;
use crate::{Dataset, Error, Image, Result, Sample, Source, Split};

const SIDE: usize = 96;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 3 * PLANE;

/// The 10 STL-10 classes, by label (after subtracting 1 from the file's labels).
pub const STL10_CLASSES: [&str; 10] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

/// One split of STL-10, read lazily from its `_X.bin` file.
#[derive(Debug)]
pub struct Stl10 {
    file: File,
    path: Arc<Path>,
    len: usize,
    labels: Option<Vec<u16>>,
    class_names: Vec<String>,
}

impl Stl10 {
    /// Opens a split from `dir`: the `stl10_binary` folder, or a folder containing it.
    pub fn open(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let dir = locate(dir.as_ref(), "stl10_binary");
        let (images, labels) = match split {
            Split::Train => ("train_X.bin", Some("train_y.bin")),
            Split::Test => ("test_X.bin", Some("test_y.bin")),
            Split::Unlabeled => ("unlabeled_X.bin", None),
        };
        let class_names = read_names(&dir.join("class_names.txt"))
            .unwrap_or_else(|| STL10_CLASSES.iter().map(|s| s.to_string()).collect());
        Self::from_files(dir.join(images), labels.map(|l| dir.join(l)), class_names)
    }

    /// Opens an images file and, for labeled splits, its labels file.
    pub fn from_files(
        images: PathBuf,
        labels: Option<PathBuf>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let file = File::open(&images).map_err(|e| Error::io(&images, e))?;
        let size = file.metadata().map_err(|e| Error::io(&images, e))?.len() as usize;
        if size == 0 || !size.is_multiple_of(RECORD) {
            return Err(Error::format(
                &images,
                format!("{size} bytes is not a whole number of {RECORD}-byte STL-10 images"),
            ));
        }
        let len = size / RECORD;
        let labels = match labels {
            None => None,
            Some(path) => {
                let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
                if bytes.len() != len {
                    return Err(Error::CountMismatch {
                        images_path: images,
                        images: len,
                        labels_path: path,
                        labels: bytes.len(),
                    });
                }
                if let Some(bad) = bytes
                    .iter()
                    .find(|&&b| b == 0 || usize::from(b) > class_names.len())
                {
                    return Err(Error::format(
                        &path,
                        format!("label {bad} is outside 1..={}", class_names.len()),
                    ));
                }
                Some(bytes.into_iter().map(|b| u16::from(b) - 1).collect())
            }
        };
        Ok(Self {
            file,
            path: images.into(),
            len,
            labels,
            class_names,
        })
    }

    fn read_image(&self, index: usize) -> Result<Image> {
        let mut record = vec![0u8; RECORD];
        read_at(&self.file, &mut record, (index * RECORD) as u64)
            .map_err(|e| Error::io(&*self.path, e))?;
        // Column-major planes -> row-major HWC: pixel (row, col) of channel c is at
        // c * PLANE + col * SIDE + row.
        Ok(Image::from_shape_fn((SIDE, SIDE, 3), |(row, col, c)| {
            record[c * PLANE + col * SIDE + row]
        }))
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, without moving a shared cursor (so threads
/// can read one file at once).
#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

impl Dataset for Stl10 {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.len)?;
        Ok(Sample {
            image: self.read_image(index)?,
            label: self.labels.as_ref().map(|l| usize::from(l[index])),
            source: Source::Record {
                file: self.path.clone(),
                index,
            },
        })
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}
