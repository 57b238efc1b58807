//! The [`Dataset`] trait every reader implements, the [`Sample`] it returns, and
//! [`InMemoryDataset`] for sets small enough to hold decoded (MNIST, CIFAR, STL-10 labeled).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;

use crate::{Error, Result};

/// An image: `u8` values, shape `[height, width, channels]`.
pub type Image = Array3<u8>;

/// Where a sample came from, for reports and contact sheets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Record `index` of a file holding many images (IDX, CIFAR, STL-10).
    Record {
        /// The file.
        file: Arc<Path>,
        /// The record's position in it (from 0).
        index: usize,
    },
    /// An image file of its own.
    File(Arc<Path>),
    /// Frame `frame` (from 0) of video number `video` of a video dataset.
    Frame {
        /// The video's index in its dataset.
        video: usize,
        /// The frame's index within the video.
        frame: usize,
        /// The video file or frame folder.
        path: Arc<Path>,
    },
}

/// One item of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The decoded image.
    pub image: Image,
    /// The class index, for labeled sets.
    pub label: Option<usize>,
    /// Where it came from.
    pub source: Source,
}

/// A random-access set of images, with optional labels.
///
/// Implementations are cheap to share between threads; [`Dataset::get_many`] decodes a batch
/// in parallel on rayon's thread pool.
pub trait Dataset: Send + Sync {
    /// Number of items.
    fn len(&self) -> usize;

    /// Whether the dataset has no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `index` (from 0), decoded. An index past the end is [`Error::IndexOutOfRange`].
    fn get(&self, index: usize) -> Result<Sample>;

    /// The class names, indexed by label (empty for unlabeled sets).
    fn class_names(&self) -> &[String];

    /// Several items at once, decoded in parallel, in the order asked.
    fn get_many(&self, indices: &[usize]) -> Result<Vec<Sample>> {
        indices.par_iter().map(|&i| self.get(i)).collect()
    }
}

pub(crate) fn check_index(index: usize, len: usize) -> Result<()> {
    if index < len {
        Ok(())
    } else {
        Err(Error::IndexOutOfRange { index, len })
    }
}

/// Decoded images of one shape in one buffer, with optional labels: the form of MNIST,
/// Fashion-MNIST, CIFAR and STL-10's labeled splits.
#[derive(Debug, Clone)]
pub struct InMemoryDataset {
    pixels: Vec<u8>,
    shape: [usize; 3],
    labels: Option<Vec<u16>>,
    class_names: Vec<String>,
    file: Arc<Path>,
}

impl InMemoryDataset {
    /// Wraps `pixels` (images of `shape` = `[H, W, C]`, back to back) and their `labels`.
    /// `file` names where they were read from (used as each sample's source).
    pub fn new(
        pixels: Vec<u8>,
        shape: [usize; 3],
        labels: Option<Vec<u16>>,
        class_names: Vec<String>,
        file: impl Into<PathBuf>,
    ) -> Result<Self> {
        let file: PathBuf = file.into();
        let image_len: usize = shape.iter().product();
        if image_len == 0 || !pixels.len().is_multiple_of(image_len) {
            return Err(Error::format(
                &file,
                format!(
                    "{} bytes do not hold whole images of shape {shape:?}",
                    pixels.len()
                ),
            ));
        }
        let count = pixels.len() / image_len;
        if let Some(labels) = &labels {
            if labels.len() != count {
                return Err(Error::format(
                    &file,
                    format!("{count} images but {} labels", labels.len()),
                ));
            }
            if let Some(bad) = labels
                .iter()
                .find(|&&l| usize::from(l) >= class_names.len())
            {
                return Err(Error::format(
                    &file,
                    format!(
                        "label {bad} is out of range for {} classes",
                        class_names.len()
                    ),
                ));
            }
        }
        Ok(Self {
            pixels,
            shape,
            labels,
            class_names,
            file: file.into(),
        })
    }

    /// The shape `[H, W, C]` every image has.
    pub fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// All pixels, image after image (`len() * H * W * C` bytes).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels, when the set has them.
    pub fn labels(&self) -> Option<&[u16]> {
        self.labels.as_deref()
    }

    /// Image `index` without copying it.
    pub fn image_view(&self, index: usize) -> Result<ArrayView3<'_, u8>> {
        check_index(index, self.len())?;
        let n = self.shape.iter().product::<usize>();
        let bytes = &self.pixels[index * n..(index + 1) * n];
        Ok(ArrayView3::from_shape(self.shape, bytes).expect("slice length matches the shape"))
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.pixels.len() / self.shape.iter().product::<usize>()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        Ok(Sample {
            image: self.image_view(index)?.to_owned(),
            label: self.labels.as_ref().map(|l| usize::from(l[index])),
            source: Source::Record {
                file: self.file.clone(),
                index,
            },
        })
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}
