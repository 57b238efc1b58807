//! Searching videos with a trained model: which video, and when, shows a query frame; and
//! which videos are most like a query clip (mean of its frame embeddings).

use std::path::{Path, PathBuf};

use contrastive_augment::Image;
use contrastive_data::{Channels, Resize, conform};
use contrastive_retrieval::normalize;
use contrastive_tensor::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::data::SplitData;
use crate::eval::{LoadedModel, embed, load_for_inference};
use crate::video::{VideoIndex, load_split, split_dirs};
use crate::{Error, Result};

/// The frames of a set of videos embedded by one model: the search side of
/// `contrastive video search`.
pub struct VideoCollection {
    /// The frames and where they come from, one split per folder searched.
    pub splits: Vec<SplitData>,
    /// Normalised backbone features `[N, F]` of every frame, split after split.
    features: Tensor,
    /// Skipped videos, one line each.
    pub warnings: Vec<String>,
    model: LoadedModel,
}

impl std::fmt::Debug for VideoCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCollection")
            .field("frames", &self.features.size()[0])
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// A video that answers a query: its best-matching moment.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoHit {
    /// The video file.
    pub path: PathBuf,
    /// The video's name.
    pub name: String,
    /// The best-matching frame's index in the video.
    pub frame: usize,
    /// That frame's time in seconds, when the frame rate is known.
    pub time: Option<f64>,
    /// Cosine similarity of the query and that frame (or, for clips, of the clip means).
    pub score: f64,
    /// The best-matching frame.
    pub image: Image,
}

impl VideoCollection {
    /// Decodes and embeds the videos in `folders` (each a folder of videos, or of `train/`
    /// and `test/` folders of them; none: the run's own videos) with the model at
    /// `model_path`; `config` is its run's (frame size, rate and normalisation).
    pub fn embed(config: &TrainConfig, model_path: &Path, folders: &[PathBuf]) -> Result<Self> {
        if !config.data.is_video() {
            return Err(Error::Invalid {
                field: "data.dataset",
                message: format!(
                    "the run trained on {:?}, not on video; video search needs a video run",
                    config.data.dataset
                ),
            });
        }
        let (data, model) = load_for_inference(config, model_path)?;
        let mut warnings = data.warnings.clone();
        let mut splits = Vec::new();
        let size = data.size;
        if folders.is_empty() {
            // The run's own videos, as the run read them (the held-out ones too, unless they
            // are the training ones again).
            let test = data
                .test
                .filter(|t| !std::sync::Arc::ptr_eq(&t.images, &data.train.images));
            splits.push(data.train);
            splits.extend(test);
        }
        for folder in folders {
            let (train, test) = split_dirs(folder);
            for dir in std::iter::once(train).chain(test) {
                splits.push(load_split(
                    &dir,
                    &config.data,
                    size,
                    "search",
                    &mut warnings,
                )?);
            }
        }
        let parts = splits
            .iter()
            .map(|s| embed(&model.model, &s.images, &model.input))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            splits,
            features: normalize(&Tensor::cat(&parts, 0)),
            warnings,
            model,
        })
    }

    /// Normalised features `[1, F]` of a query image of any size and channel count,
    /// prepared as the frames were.
    pub fn embed_image(&self, image: image::DynamicImage) -> Result<Tensor> {
        let size = self.model.size as u32;
        let query = conform(
            image,
            Channels::Rgb,
            Resize::ShorterSideThenCenterCrop { size },
        );
        Ok(normalize(&embed(
            &self.model.model,
            &[query],
            &self.model.input,
        )?))
    }

    /// The `k` videos whose best frame is most like `query` (`[1, F]`, normalised), each
    /// with that frame.
    pub fn search_frame(&self, query: &Tensor, k: usize) -> Result<Vec<VideoHit>> {
        let scores = Vec::<f32>::try_from(&self.features.matmul(&query.tr()).squeeze_dim(1))?;
        // Best frame of each video, over all splits.
        let mut best: Vec<(usize, usize, f32)> = Vec::new(); // (split, frame row, score)
        let mut offset = 0;
        for (s, split) in self.splits.iter().enumerate() {
            let index = video_index(split);
            let mut per_video = vec![(usize::MAX, f32::NEG_INFINITY); index.names.len()];
            for row in 0..split.images.len() {
                let score = scores[offset + row];
                let slot = &mut per_video[index.video[row]];
                if score > slot.1 {
                    *slot = (row, score);
                }
            }
            best.extend(
                per_video
                    .into_iter()
                    .filter(|(row, _)| *row != usize::MAX)
                    .map(|(row, score)| (s, row, score)),
            );
            offset += split.images.len();
        }
        best.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(best
            .into_iter()
            .take(k)
            .map(|(s, row, score)| self.hit(s, row, f64::from(score)))
            .collect())
    }

    /// The `k` videos whose clip embedding (normalised mean of normalised frame features)
    /// is most like that of `frames`, the query clip's features `[T, F]`; each with its
    /// frame most like the query clip.
    pub fn search_clip(&self, frames: &Tensor, k: usize) -> Result<Vec<VideoHit>> {
        let query = clip(frames);
        let mut scored = Vec::new();
        let mut offset = 0;
        for (s, split) in self.splits.iter().enumerate() {
            let index = video_index(split);
            for (start, &count) in index.starts().iter().zip(&index.counts) {
                let features = self
                    .features
                    .narrow(0, (offset + start) as i64, count as i64);
                let score = clip(&features).matmul(&query.tr()).double_value(&[0, 0]);
                let row = features
                    .matmul(&query.tr())
                    .argmax(0, false)
                    .int64_value(&[]);
                scored.push((s, start + row as usize, score));
            }
            offset += split.images.len();
        }
        scored.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(s, row, score)| self.hit(s, row, score))
            .collect())
    }

    /// Normalised features `[T, F]` of the frames of the video file `path`, decoded as the
    /// collection's frames were.
    pub fn embed_video(&self, config: &TrainConfig, path: &Path) -> Result<Tensor> {
        let options = contrastive_data::FrameOptions {
            fps: config.data.fps,
            size: Some((self.model.size as u32, self.model.size as u32)),
            channels: contrastive_data::VideoChannels::Rgb,
        };
        let frames = contrastive_data::FrameReader::open(path, &options)?
            .collect::<contrastive_data::Result<Vec<Image>>>()?;
        Ok(normalize(&embed(
            &self.model.model,
            &frames,
            &self.model.input,
        )?))
    }

    fn hit(&self, split: usize, row: usize, score: f64) -> VideoHit {
        let data = &self.splits[split];
        let index = video_index(data);
        let video = index.video[row];
        VideoHit {
            path: index.paths[video].clone(),
            name: index.names[video].clone(),
            frame: index.frame[row],
            time: index.time(row),
            score,
            image: data.images[row].clone(),
        }
    }
}

fn video_index(split: &SplitData) -> &VideoIndex {
    split
        .video
        .as_deref()
        .expect("video splits carry their index")
}

/// The normalised mean `[1, F]` of normalised features `[T, F]`.
fn clip(features: &Tensor) -> Tensor {
    normalize(&features.mean_dim(0, true, Kind::Float))
}
