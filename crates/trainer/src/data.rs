//! The dataset of a run, in memory: training images (with labels when it has them), the
//! held-out split for the kNN monitor, and the normalisation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use contrastive_augment::Image;
use contrastive_data::{
    Channels, Dataset, FolderOptions, ImageFolder, InMemoryDataset, Resize, Split, cifar10,
    cifar100, conform, download, fashion_mnist, image_from_hwc, mnist,
};

use rayon::prelude::*;

use crate::config::{DataConfig, DatasetName};
use crate::error::warn;
use crate::split::SplitData;
use crate::standard::{standard_dir, standard_stats};
use crate::video;
use crate::{Error, Result};

/// Everything a run reads.
#[derive(Debug, Clone)]
pub struct RunData {
    /// What is trained on.
    pub train: SplitData,
    /// What the kNN monitor and the final report test on (labeled), when there is one.
    pub test: Option<SplitData>,
    /// Class names (empty for unlabeled data).
    pub classes: Vec<String>,
    /// Channels of every image.
    pub channels: usize,
    /// Side of the (square) images.
    pub size: usize,
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// What was skipped while reading (unreadable videos), one line each.
    pub warnings: Vec<String>,
}

/// The folder of a video dataset; the demo set is generated there first when absent (by
/// default under the data folder, from Fashion-MNIST).
fn video_dir(config: &DataConfig) -> Result<PathBuf> {
    if config.dataset == DatasetName::Video {
        return Ok(config.dir.clone().expect("validated: video has a dir"));
    }
    let dir = match &config.dir {
        Some(dir) => dir.clone(),
        None => download::data_root(&|k| std::env::var_os(k))
            .ok_or_else(|| Error::MissingData {
                message: "no data folder (set HOME, CONTRASTIVE_DATA_DIR or data.dir)".into(),
            })?
            .join("video-demo"),
    };
    // Generates only the splits that are not complete yet.
    video::ensure_demo(&dir)?;
    Ok(dir)
}

fn from_memory(set: &InMemoryDataset, name: &str, split: &str) -> Result<SplitData> {
    let images = (0..set.len())
        .map(|i| Ok(set.image_view(i)?.to_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok(SplitData {
        images: Arc::new(images),
        labels: set
            .labels()
            .map(|l| l.iter().map(|&x| usize::from(x)).collect()),
        ids: (0..set.len())
            .map(|i| format!("{name}:{split}:{i}"))
            .collect(),
        video: None,
    })
}

/// Reads an image folder into memory: images brought to `config.channels` (or to what
/// most of them have), unreadable files skipped with a warning each and a count (or, with
/// `on_bad_file = "fail"`, the first one an error). Warnings go to `warnings` and to
/// `tracing`.
fn from_folder(
    dir: &Path,
    config: &DataConfig,
    warnings: &mut Vec<String>,
) -> Result<(SplitData, Vec<String>)> {
    if !dir.is_dir() {
        return Err(Error::MissingData {
            message: format!("image folder {} does not exist", dir.display()),
        });
    }
    let strict = config.on_bad_file == "fail";
    let options = FolderOptions {
        resize: config
            .image_size
            .map_or(Resize::Keep, |s| Resize::ShorterSideThenCenterCrop {
                size: s as u32,
            }),
        channels: match config.channels {
            Some(1) => Channels::Gray,
            Some(_) => Channels::Rgb,
            None => Channels::Keep,
        },
        strict,
        ..Default::default()
    };
    let folder = ImageFolder::open(dir, options)?;
    // The folder logged these itself when it opened.
    warnings.extend(
        folder
            .skipped()
            .iter()
            .map(|f| format!("skipped {}: {}", f.path.display(), f.reason)),
    );
    let mut skipped = folder.skipped().len();
    let mut kept = Vec::with_capacity(folder.len());
    let decoded: Vec<_> = (0..folder.len())
        .into_par_iter()
        .map(|i| folder.get(i))
        .collect();
    for (i, sample) in decoded.into_iter().enumerate() {
        match sample {
            Ok(sample) => kept.push((i, sample)),
            Err(e) if strict => return Err(e.into()),
            Err(e) => {
                skipped += 1;
                warn(warnings, format!("skipped {e}"));
            }
        }
    }
    if skipped > 0 {
        let total = folder.len() + folder.skipped().len();
        let summary = format!(
            "skipped {skipped} of {total} files in {} (data.on_bad_file = \"fail\" stops \
             instead)",
            dir.display()
        );
        warn(warnings, summary);
    }
    if kept.is_empty() {
        return Err(Error::MissingData {
            message: format!("image folder {} holds no readable images", dir.display()),
        });
    }
    let images = match config.channels {
        Some(_) => kept.iter().map(|(_, s)| s.image.clone()).collect(),
        None => same_channels(kept.iter().map(|(_, s)| &s.image), dir, warnings)?,
    };
    let labels = kept
        .iter()
        .map(|(_, s)| s.label)
        .collect::<Option<Vec<_>>>();
    let ids = kept
        .iter()
        .map(|(i, _)| Ok(folder.path(*i)?.display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    Ok((
        SplitData {
            images: Arc::new(images),
            labels,
            ids,
            video: None,
        },
        folder.class_names().to_vec(),
    ))
}

/// `images` brought to one channel count, what most of them have (gray with or without
/// alpha counts as gray, colour with or without alpha as colour; a tie goes to colour);
/// a mix is announced in `warnings`.
fn same_channels<'a>(
    images: impl Iterator<Item = &'a Image> + Clone,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<Image>> {
    let gray = images.clone().filter(|i| i.dim().2 <= 2).count();
    let colour = images.clone().count() - gray;
    let (target, channels) = if colour >= gray {
        (3, Channels::Rgb)
    } else {
        (1, Channels::Gray)
    };
    if gray > 0 && colour > 0 {
        let message = format!(
            "{} mixes {gray} gray and {colour} colour images; all are brought to {target} \
             channel(s) (set data.channels to choose)",
            dir.display()
        );
        warn(warnings, message);
    }
    images
        .map(|image| {
            if image.dim().2 == target {
                return Ok(image.clone());
            }
            let picture = image_from_hwc(image.view())?;
            Ok(conform(picture, channels, Resize::Keep))
        })
        .collect()
}

/// Mean and standard deviation of every channel over all images.
fn measured_stats(images: &[Image]) -> (Vec<f32>, Vec<f32>) {
    let channels = images[0].dim().2;
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    let mut count = 0f64;
    for image in images {
        for pixel in image.rows() {
            for (c, &v) in pixel.iter().enumerate() {
                let v = f64::from(v) / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        count += (image.dim().0 * image.dim().1) as f64;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| ((s / count - m * m).max(1e-6)).sqrt() as f32)
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

/// Reads the dataset `config` names.
pub fn load(config: &DataConfig) -> Result<RunData> {
    let mut warnings = Vec::new();
    let (train, test, classes) = match config.dataset {
        DatasetName::Video | DatasetName::VideoDemo => {
            let size = config.image_size.unwrap_or(video::DEMO_SIZE);
            let (train_dir, test_dir) = video::split_dirs(&video_dir(config)?);
            let train = video::load_split(&train_dir, config, size, "train", &mut warnings)?;
            // Without held-out videos, the figures are measured on the training videos.
            let test = match test_dir {
                Some(dir) => video::load_split(&dir, config, size, "test", &mut warnings)?,
                None => train.clone(),
            };
            let names = train
                .video
                .as_ref()
                .map(|v| v.names.clone())
                .unwrap_or_default();
            (train, Some(test), names)
        }
        DatasetName::Folder => {
            let dir = config.dir.as_deref().expect("validated: folder has a dir");
            let (train, classes) = from_folder(dir, config, &mut warnings)?;
            let test = match &config.test_dir {
                Some(test_dir) => Some(from_folder(test_dir, config, &mut warnings)?.0),
                None => None,
            };
            (train, test, classes)
        }
        standard @ (DatasetName::FashionMnist
        | DatasetName::Mnist
        | DatasetName::Cifar10
        | DatasetName::Cifar100) => {
            let (dir, name) = (standard_dir(config)?, standard.as_str());
            let read = |split| -> Result<InMemoryDataset> {
                Ok(match standard {
                    DatasetName::FashionMnist => fashion_mnist(&dir, split)?,
                    DatasetName::Mnist => mnist(&dir, split)?,
                    DatasetName::Cifar10 => cifar10(&dir, split)?,
                    _ => cifar100(&dir, split, contrastive_data::Cifar100Label::Fine)?,
                })
            };
            let train = read(Split::Train)?;
            let classes = train.class_names().to_vec();
            (
                from_memory(&train, name, "train")?,
                Some(from_memory(&read(Split::Test)?, name, "test")?),
                classes,
            )
        }
    };
    let Some(first) = train.images.first() else {
        return Err(Error::MissingData {
            message: format!("the {} training set holds no images", config.dataset),
        });
    };
    let (h, w, channels) = first.dim();
    if let Some(bad) = train.images.iter().find(|i| i.dim() != (h, w, channels)) {
        return Err(Error::MissingData {
            message: format!(
                "images differ in shape ({:?} and {:?}); set data.image_size",
                (h, w, channels),
                bad.dim()
            ),
        });
    }
    let (mean, std) = match (
        &config.mean,
        &config.std,
        standard_stats(config.dataset.as_str()),
    ) {
        (Some(m), Some(s), _) => (m.clone(), s.clone()),
        (_, _, Some(stats)) => stats,
        _ => measured_stats(&train.images),
    };
    if mean.len() != channels {
        return Err(Error::Invalid {
            field: "data.mean",
            message: format!(
                "has {} values but the images have {channels} channels",
                mean.len()
            ),
        });
    }
    let test = test.filter(|t| t.labels.is_some() && !t.images.is_empty());
    Ok(RunData {
        train,
        test,
        classes,
        channels,
        size: h.min(w),
        mean,
        std,
        warnings,
    })
}
