//! `contrastive-data`: every image the toolkit trains on or searches comes through here.
//! The crate has no tensor dependency, so `cargo xtask` uses it without building libtorch.
//!
//! - One [`Dataset`] trait (`len`, `get(i)` -> [`Sample`]: a `u8` image `[H, W, C]`, an
//!   optional label and its [`Source`], `class_names`, parallel `get_many`).
//! - Readers: IDX for MNIST and Fashion-MNIST ([`fashion_mnist`], [`mnist`], [`read_idx`]),
//!   CIFAR-10/100 binary ([`cifar10`], [`cifar100`]), STL-10 binary ([`Stl10`], read
//!   lazily), folders of images of any format and size ([`ImageFolder`] with [`Channels`]
//!   and [`Resize`] policies), and video ([`FrameReader`] streams frames out of `ffmpeg`;
//!   [`FrameFolders`] and [`VideoFiles`] are frame datasets; [`write_demo_videos`] makes
//!   a demo set for temporal learning).
//! - Downloads ([`download`]): official URLs and mirrors, SHA-256 checked, resumable.
//!
//! ```no_run
//! use contrastive_data::{Dataset, Split, fashion_mnist};
//! let train = fashion_mnist("/usr/share/datasets/fashion-mnist", Split::Train)?;
//! assert_eq!(train.len(), 60_000);
//! let sample = train.get(0)?;
//! assert_eq!(sample.image.dim(), (28, 28, 1));
//! println!("first item: {}", train.class_names()[sample.label.unwrap()]);
//! # Ok::<(), contrastive_data::Error>(())
//! ```

mod cifar;
mod dataset;
pub mod download;
mod error;
mod folder;
mod idx;
mod image_io;
mod stl10;
mod video;
mod video_demo;

pub use crate::cifar::{CIFAR10_CLASSES, Cifar100Label, cifar10, cifar100, read_cifar_files};
pub use crate::dataset::{Dataset, Image, InMemoryDataset, Sample, Source};
pub use crate::error::{Error, Result};
pub use crate::folder::{FolderOptions, ImageFolder, Layout, SkippedFile};
pub use crate::idx::{
    FASHION_MNIST_CLASSES, IdxArray, fashion_mnist, mnist, read_idx, read_idx_pair,
};
pub use crate::image_io::{
    Channels, Resize, conform, decode_image, hwc_from_image, image_from_hwc, pixel_hash, read_image,
};
pub use crate::stl10::{STL10_CLASSES, Stl10};
pub use crate::video::{
    FrameFolders, FrameOptions, FrameReader, VIDEO_EXTENSIONS, VideoChannels, VideoFiles,
    VideoInfo, check_ffmpeg, is_video_file, probe,
};
pub use crate::video_demo::{DemoSpec, DemoVideo, SCENES_FILE, read_scenes, write_demo_videos};

/// Which part of a standard dataset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images.
    Train,
    /// The test images.
    Test,
    /// The unlabeled images (STL-10).
    Unlabeled,
}

/// Orders names as people do: digit runs by value (`f2` before `f10`), the rest by text.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, nb) = (
                    a[..da].trim_start_matches('0'),
                    b[..db].trim_start_matches('0'),
                );
                let order = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then_with(|| da.cmp(&db));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;

    #[test]
    fn natural_order_sorts_numbers_by_value() {
        let mut names = vec![
            "f10.png", "f2.png", "f1.png", "g.png", "f02.png", "e100.png",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "e100.png", "f1.png", "f2.png", "f02.png", "f10.png", "g.png"
            ]
        );
    }
}
