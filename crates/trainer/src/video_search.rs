//! Searching videos with a trained model: which video, and when, shows a query frame; and
//! which videos are most like a query clip (mean of its frame embeddings).
//!
//! The frames' embeddings live in a frame store: an [`EmbeddingStore`] whose info lists its
//! videos (one row per frame, each video's rows consecutive). `contrastive video embed`
//! writes one once and brings it up to date incrementally ([`VideoCollection::update`]);
//! searching it ([`VideoCollection::open`]) reads no video but the frames a result shows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use contrastive_augment::Image;
use contrastive_data::{
    Channels, FrameOptions, FrameReader, Resize, VideoChannels, conform, is_video_file, read_image,
};
use contrastive_retrieval::{EmbeddingStore, Preprocess, StoreInfo, StoredVideo, normalize};
use contrastive_tensor::{Kind, Tensor};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;
use crate::evaluation::embed;
use crate::inference::{LoadedModel, load_for_inference, model_identity};
use crate::split::SplitData;
use crate::split::VideoIndex;
use crate::video::{load_split, split_dirs};
use crate::{Error, Result};

/// The frames of a set of videos embedded by one model: the search side of
/// `contrastive video search`.
pub struct VideoCollection {
    /// The frames' backbone features, ids (`video#frame`, or a frame image's path) and videos.
    store: EmbeddingStore,
    /// The same features, normalised.
    features: Tensor,
    /// The first row of each video of the store.
    starts: Vec<usize>,
    /// Skipped or changed videos, one line each (each also logged through `tracing`).
    pub warnings: Vec<String>,
    model: LoadedModel,
    /// How frames are decoded (the run's rate, the model's size).
    options: FrameOptions,
}

impl std::fmt::Debug for VideoCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCollection")
            .field("videos", &self.starts.len())
            .field("frames", &self.store.len())
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

/// What [`VideoCollection::update`] did to a frame store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameStoreUpdate {
    /// Videos embedded (new, changed, or all of them without a usable store).
    pub embedded: usize,
    /// Videos whose frames were kept from the previous store.
    pub reused: usize,
    /// Videos of the previous store no longer in the folders searched.
    pub dropped: usize,
}

/// Frames embedded between saves of a frame store being written, so that an interrupted
/// `video embed` keeps most of its work.
const SAVE_EVERY_FRAMES: usize = 4096;

impl VideoCollection {
    /// Decodes and embeds the videos in `folders` (each a folder of videos, or of `train/`
    /// and `test/` folders of them; none: the run's own videos) with the model at
    /// `model_path`; `config` is its run's (frame size, rate and normalisation).
    pub fn embed(config: &TrainConfig, model_path: &Path, folders: &[PathBuf]) -> Result<Self> {
        Ok(Self::update(config, model_path, folders, None, None)?.0)
    }

    /// [`VideoCollection::embed`], keeping the frames of every video that `previous` (a
    /// frame store of the same model) holds unchanged, and saving the store to `save_to`
    /// as it grows (every few thousand frames, and at the end), so that a run cut short
    /// keeps what it embedded.
    pub fn update(
        config: &TrainConfig,
        model_path: &Path,
        folders: &[PathBuf],
        previous: Option<&EmbeddingStore>,
        save_to: Option<&Path>,
    ) -> Result<(Self, FrameStoreUpdate)> {
        if !config.data.is_video() {
            return Err(Error::Invalid {
                field: "data.dataset",
                message: format!(
                    "the run trained on \"{}\", not on video; video search needs a video run",
                    config.data.dataset
                ),
            });
        }
        let (data, model) = load_for_inference(config, model_path)?;
        let mut warnings = data.warnings.clone();
        let preprocess = Preprocess {
            size: data.size,
            channels: data.channels,
            mean: data.mean.clone(),
            std: data.std.clone(),
        };
        let options = frame_options(config, data.size);
        let mut splits = Vec::new();
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
                    preprocess.size,
                    "search",
                    &mut warnings,
                )?);
            }
        }
        let identity = model_identity(model_path)?;
        let previous = previous.filter(|p| {
            let usable = p.info().model == identity
                && p.info().preprocess == preprocess
                && p.info().videos.is_some();
            if !usable {
                let message = "the frame store was made by another model or from other \
                               frames; every video is embedded again";
                crate::error::warn(&mut warnings, message.into());
            }
            usable
        });
        let mut stored = StoredFrames::default();
        let mut update = FrameStoreUpdate::default();
        let mut pending = Vec::new();
        let old = previous.map(StoredFrames::index_of).unwrap_or_default();
        for split in &splits {
            let index = video_index(split);
            for (v, start) in index.starts().into_iter().enumerate() {
                let video = StoredVideo {
                    path: index.paths[v].clone(),
                    name: index.names[v].clone(),
                    fingerprint: fingerprint(&index.paths[v], &options)?,
                    frames: index.counts[v],
                    fps: index.fps,
                };
                match (previous, old.get(&video.path)) {
                    (Some(previous), Some(&(row, ref was))) if *was == video => {
                        stored.keep(previous, row, was);
                        update.reused += 1;
                    }
                    _ => pending.push((split, index, start, video)),
                }
            }
        }
        if let Some(previous) = previous {
            let present: std::collections::HashSet<&Path> = splits
                .iter()
                .flat_map(|s| video_index(s).paths.iter().map(PathBuf::as_path))
                .collect();
            update.dropped = previous
                .info()
                .videos
                .iter()
                .flatten()
                .filter(|v| !present.contains(v.path.as_path()))
                .count();
        }
        let mut unsaved = 0;
        for (split, index, start, video) in pending {
            let frames = &split.images[start..start + video.frames];
            let features = embed(&model.model, frames, &model.input)?;
            let ids = (0..video.frames).map(|f| frame_id(index, start + f));
            unsaved += video.frames;
            stored.push(features, ids, video);
            update.embedded += 1;
            if let Some(path) = save_to
                && unsaved >= SAVE_EVERY_FRAMES
            {
                stored.to_store(&identity, &preprocess)?.save(path)?;
                unsaved = 0;
            }
        }
        let store = stored.to_store(&identity, &preprocess)?;
        if let Some(path) = save_to {
            store.save(path)?;
        }
        let mut collection = Self::of_store(store, model, options)?;
        collection.warnings = warnings;
        Ok((collection, update))
    }

    /// The frame store at `store_path` (written by [`VideoCollection::update`]) with the
    /// model at `model_path` that made it, for searching; the run's videos are not read.
    /// Videos changed or gone since the store was written are listed in `warnings`.
    pub fn open(config: &TrainConfig, model_path: &Path, store_path: &Path) -> Result<Self> {
        let store = EmbeddingStore::load(store_path)?;
        if store.info().videos.is_none() {
            return Err(Error::Invalid {
                field: "frames",
                message: format!(
                    "{} is a store of images, not of video frames (make one with `contrastive \
                     video embed`)",
                    store_path.display()
                ),
            });
        }
        store.check_model(&model_identity(model_path)?)?;
        let model = LoadedModel::for_store(config, model_path, &store.info().preprocess)?;
        let options = frame_options(config, store.info().preprocess.size);
        let mut collection = Self::of_store(store, model, options)?;
        let stale: Vec<String> = collection
            .videos()
            .iter()
            .filter(|v| fingerprint(&v.path, &options).ok().as_ref() != Some(&v.fingerprint))
            .map(|v| v.path.display().to_string())
            .collect();
        if !stale.is_empty() {
            let message = format!(
                "{} of the {} videos in {} changed or are gone since it was written (run \
                 `contrastive video embed` again): {}",
                stale.len(),
                collection.videos().len(),
                store_path.display(),
                stale.join(", ")
            );
            crate::error::warn(&mut collection.warnings, message);
        }
        Ok(collection)
    }

    fn of_store(store: EmbeddingStore, model: LoadedModel, options: FrameOptions) -> Result<Self> {
        let mut starts = Vec::new();
        let mut row = 0;
        for video in store.info().videos.iter().flatten() {
            starts.push(row);
            row += video.frames;
        }
        if starts.is_empty() {
            return Err(Error::MissingData {
                message: "no videos to search".into(),
            });
        }
        Ok(Self {
            features: normalize(store.embeddings()),
            store,
            starts,
            warnings: Vec::new(),
            model,
            options,
        })
    }

    /// The frame store behind the collection (save it to search again without embedding).
    pub fn store(&self) -> &EmbeddingStore {
        &self.store
    }

    /// The videos searched, in row order.
    pub fn videos(&self) -> &[StoredVideo] {
        self.store.info().videos.as_deref().unwrap_or_default()
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
        let mut best: Vec<(usize, usize, f32)> = self
            .ranges()
            .map(|(v, rows)| {
                let row = rows
                    .clone()
                    .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                    .expect("stored videos have frames");
                (v, row, scores[row])
            })
            .collect();
        best.sort_by(|a, b| b.2.total_cmp(&a.2));
        best.into_iter()
            .take(k)
            .map(|(v, row, score)| self.hit(v, row, f64::from(score)))
            .collect()
    }

    /// The `k` videos whose clip embedding (normalised mean of normalised frame features)
    /// is most like that of `frames`, the query clip's features `[T, F]`; each with its
    /// frame most like the query clip.
    pub fn search_clip(&self, frames: &Tensor, k: usize) -> Result<Vec<VideoHit>> {
        let query = clip(frames);
        let mut scored = Vec::new();
        for (v, rows) in self.ranges() {
            let features = self
                .features
                .narrow(0, rows.start as i64, rows.len() as i64);
            let score = clip(&features).matmul(&query.tr()).double_value(&[0, 0]);
            let best = features
                .matmul(&query.tr())
                .argmax(0, false)
                .int64_value(&[]);
            scored.push((v, rows.start + best as usize, score));
        }
        scored.sort_by(|a, b| b.2.total_cmp(&a.2));
        scored
            .into_iter()
            .take(k)
            .map(|(v, row, score)| self.hit(v, row, score))
            .collect()
    }

    /// Normalised features `[T, F]` of the frames of the video file `path`, decoded as the
    /// collection's frames were, and its middle frame (to show the clip by).
    pub fn embed_clip(&self, path: &Path) -> Result<(Tensor, Image)> {
        let frames = FrameReader::open(path, &self.options)?
            .collect::<contrastive_data::Result<Vec<Image>>>()?;
        let middle = frames
            .get(frames.len() / 2)
            .cloned()
            .ok_or_else(|| Error::MissingData {
                message: format!("{} has no frames", path.display()),
            })?;
        let features = normalize(&embed(&self.model.model, &frames, &self.model.input)?);
        Ok((features, middle))
    }

    /// Each video's index and rows.
    fn ranges(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        self.videos()
            .iter()
            .zip(&self.starts)
            .enumerate()
            .map(|(v, (video, &start))| (v, start..start + video.frames))
    }

    /// Video `v`'s frame at store row `row` as a hit, its image decoded now.
    fn hit(&self, v: usize, row: usize, score: f64) -> Result<VideoHit> {
        let video = &self.videos()[v];
        let frame = row - self.starts[v];
        Ok(VideoHit {
            path: video.path.clone(),
            name: video.name.clone(),
            frame,
            time: video.fps.map(|fps| frame as f64 / fps),
            score,
            image: self.frame_image(video, row, frame)?,
        })
    }

    /// The `frame`-th frame of `video` (store row `row`), decoded as when it was embedded.
    fn frame_image(&self, video: &StoredVideo, row: usize, frame: usize) -> Result<Image> {
        if !is_video_file(&video.path) {
            let path = Path::new(&self.store.info().ids[row]);
            let size = self.model.size as u32;
            let resize = Resize::ShorterSideThenCenterCrop { size };
            return Ok(conform(read_image(path)?, Channels::Rgb, resize));
        }
        FrameReader::open(&video.path, &self.options)?
            .nth(frame)
            .transpose()?
            .ok_or_else(|| Error::MissingData {
                message: format!(
                    "{} has no frame {frame} any more (run `contrastive video embed` again)",
                    video.path.display()
                ),
            })
    }
}

/// Rows of a frame store being put together: features, ids and videos in row order.
#[derive(Default)]
struct StoredFrames {
    features: Vec<Tensor>,
    ids: Vec<String>,
    videos: Vec<StoredVideo>,
}

impl StoredFrames {
    /// The first row of each video of `store`, by path.
    fn index_of(store: &EmbeddingStore) -> HashMap<PathBuf, (usize, StoredVideo)> {
        let mut row = 0;
        let mut index = HashMap::new();
        for video in store.info().videos.iter().flatten() {
            index.insert(video.path.clone(), (row, video.clone()));
            row += video.frames;
        }
        index
    }

    /// Takes `video`'s rows from `store`, where they start at `row`.
    fn keep(&mut self, store: &EmbeddingStore, row: usize, video: &StoredVideo) {
        let rows = row..row + video.frames;
        let features = store
            .embeddings()
            .narrow(0, row as i64, video.frames as i64);
        self.push(
            features,
            store.info().ids[rows].iter().cloned(),
            video.clone(),
        );
    }

    fn push(&mut self, features: Tensor, ids: impl Iterator<Item = String>, video: StoredVideo) {
        self.features.push(features);
        self.ids.extend(ids);
        self.videos.push(video);
    }

    fn to_store(&self, model: &str, preprocess: &Preprocess) -> Result<EmbeddingStore> {
        if self.features.is_empty() {
            return Err(Error::MissingData {
                message: "no videos to embed".into(),
            });
        }
        let info = StoreInfo {
            model: model.to_owned(),
            ids: self.ids.clone(),
            preprocess: preprocess.clone(),
            videos: Some(self.videos.clone()),
            labels: None,
            contents: None,
        };
        Ok(EmbeddingStore::new(&Tensor::cat(&self.features, 0), info)?)
    }
}

/// How the frames of a run's videos are decoded at `size` pixels.
fn frame_options(config: &TrainConfig, size: usize) -> FrameOptions {
    FrameOptions {
        fps: config.data.fps,
        size: Some((size as u32, size as u32)),
        channels: VideoChannels::Rgb,
    }
}

/// The id of row `row` of a split: `video#frame` for a frame of a video file, the frame's
/// own file for a folder of frames.
fn frame_id(index: &VideoIndex, row: usize) -> String {
    let source = &index.sources[row];
    if is_video_file(source) {
        format!("{}#{}", source.display(), index.frame[row])
    } else {
        source.display().to_string()
    }
}

/// What the frames of the video at `path` (a file, or a folder of frame files) are made
/// from: each file's name, size and modification time, and the decoding settings.
fn fingerprint(path: &Path, options: &FrameOptions) -> Result<String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut hash = Sha256::new();
    hash.update(format!("{:?} {:?}", options.fps, options.size));
    for file in files {
        let meta = std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        hash.update(format!("{}\0{}\0{modified}\0", file.display(), meta.len()));
    }
    Ok(hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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
