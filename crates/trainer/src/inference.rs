//! Inference with a saved model: loading it with the run's numerics, embedding a dataset or
//! a query (into an embedding store), and evaluating it as the run's final report did.

use contrastive_augment::Image;
use std::path::Path;

use contrastive_data::{Channels, Resize, conform, pixel_hash};
use contrastive_models::{EmbeddingModel, load_model};
use contrastive_retrieval::{EmbeddingStore, Item, Preprocess, StoreInfo};
use contrastive_tensor::{Device, Precision, Tensor, nn::VarStore, var_store_to_channels_last};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::baseline::{PixelComparison, raw_pixel_baseline};
use crate::config::{DatasetName, TrainConfig};
use crate::data::RunData;
use crate::evaluation::{Evaluation, Features, Input, embed};
use crate::split::SplitData;
use crate::{Error, Result};

/// A saved model loaded for inference with the run's numerics, its input format and the
/// side of its input images.
pub(crate) struct LoadedModel {
    /// Owns the weights `model` computes with.
    _vs: VarStore,
    /// The network.
    pub(crate) model: EmbeddingModel,
    /// How images become its input.
    pub(crate) input: Input,
    /// Side of the square images of the run's data.
    pub(crate) size: usize,
}

/// Loads `model_path` for inference and the data `config` names, read for that model: a
/// folder dataset without `data.channels` is brought to the channels the model takes (its
/// gray or colour images converted); any other difference in channels is an error naming
/// both, raised before the data is read where the config tells it.
pub(crate) fn load_for_inference(
    config: &TrainConfig,
    model_path: &Path,
) -> Result<(RunData, LoadedModel)> {
    let device = config.run.requested_numerics()?.0;
    let (vs, model) = load_model(model_path, device)?;
    let takes = usize::try_from(model.config().in_channels).unwrap_or(0);
    let mut data_config = config.data.clone();
    if data_config.dataset == DatasetName::Folder && data_config.channels.is_none() {
        data_config.channels = Some(takes);
    }
    let mismatch = |has: usize, source: &str| Error::Invalid {
        field: "data.channels",
        message: format!(
            "{} takes {takes}-channel images, but {source} {has}-channel ones; use the model \
             on data like its run's{}",
            model_path.display(),
            if config.data.dataset == DatasetName::Folder {
                format!(" (or set data.channels = {takes} to convert the images)")
            } else {
                String::new()
            }
        ),
    };
    if let Some(has) = data_config.channels.filter(|&c| c != takes) {
        return Err(mismatch(has, "data.channels asks for"));
    }
    let data = crate::data::load(&data_config)?;
    if data.channels != takes {
        let source = format!("the data ({}) has", config.data.dataset);
        return Err(mismatch(data.channels, &source));
    }
    let loaded = LoadedModel::fed(config, vs, model, &data.mean, &data.std, data.size)?;
    Ok((data, loaded))
}

impl LoadedModel {
    /// The model at `model_path` with the run's numerics, fed images prepared as `preprocess`
    /// says (a store's), without reading the run's data.
    pub(crate) fn for_store(
        config: &TrainConfig,
        model_path: &Path,
        preprocess: &Preprocess,
    ) -> Result<Self> {
        let device = config.run.requested_numerics()?.0;
        let (vs, model) = load_model(model_path, device)?;
        let pre = preprocess;
        Self::fed(config, vs, model, &pre.mean, &pre.std, pre.size)
    }

    /// `model` (whose weights `vs` holds) fed `size`-pixel images normalised by `mean` and
    /// `std`, in the run's precision and layout.
    fn fed(
        config: &TrainConfig,
        vs: VarStore,
        model: EmbeddingModel,
        mean: &[f32],
        std: &[f32],
        size: usize,
    ) -> Result<Self> {
        let (device, precision, channels_last) = config.run.numerics()?;
        if channels_last {
            var_store_to_channels_last(&vs)?;
        }
        let format = Input::format(mean, std, channels_last)?;
        Ok(Self {
            _vs: vs,
            model,
            input: Input {
                device,
                precision,
                format,
            },
            size,
        })
    }
}

/// Evaluates a saved model (a run's `model.safetensors`) on the data `config` names, with
/// the run's device, precision and evaluation settings: the same figures as the run's final
/// report.
pub fn evaluate_saved(config: &TrainConfig, model_path: &Path) -> Result<Evaluation> {
    Ok(evaluate_loaded(config, model_path)?.1)
}

/// [`evaluate_saved`], and its figures held against the raw pixels' (cached per dataset;
/// `None` for video).
pub fn evaluate_saved_against_pixels(
    config: &TrainConfig,
    model_path: &Path,
) -> Result<(Evaluation, Option<PixelComparison>)> {
    let (data, evaluation) = evaluate_loaded(config, model_path)?;
    let comparison = PixelComparison::of(config, &data, &evaluation)?;
    Ok((evaluation, comparison))
}

/// The data `config` names and the evaluation of `model_path` on it.
fn evaluate_loaded(config: &TrainConfig, model_path: &Path) -> Result<(RunData, Evaluation)> {
    let (data, loaded) = load_for_inference(config, model_path)?;
    let test = held_out(&data)?;
    let features = Features::labeled(&data.train, test, &|images| {
        embed(&loaded.model, images, &loaded.input)
    })?;
    let evaluation = features.evaluate(&config.eval, data.classes.len(), config.run.seed, None)?;
    Ok((data, evaluation))
}

/// The same evaluation as [`evaluate_saved`] with the normalised pixels themselves as
/// features: the baseline a learned embedding has to beat (cached per dataset, see
/// [`raw_pixel_baseline`]).
pub fn evaluate_raw_pixels(config: &TrainConfig) -> Result<Evaluation> {
    let data = crate::data::load(&config.data)?;
    held_out(&data)?;
    raw_pixel_baseline(config, &data)?.ok_or_else(|| Error::MissingData {
        message: "raw pixels are compared on labeled images, not on video".into(),
    })
}

/// The labeled held-out split an evaluation tests on.
fn held_out(data: &RunData) -> Result<&SplitData> {
    data.test.as_ref().ok_or_else(|| Error::MissingData {
        message: "the dataset has no labeled held-out split to evaluate on (data.test_dir)".into(),
    })
}

/// The identity of a weights file: the hex SHA-256 of its bytes.
pub fn model_identity(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Embeds the training split of `config`'s data with a saved model (backbone features):
/// an [`EmbeddingStore`] with the items' ids, labels, the model's identity and its
/// preprocessing.
pub fn embed_dataset(config: &TrainConfig, model_path: &Path) -> Result<EmbeddingStore> {
    let run = DatasetEmbedder::open(config, model_path)?;
    let rows: Vec<usize> = (0..run.items().len()).collect();
    let features = run.embed(&rows)?;
    let items = run.items();
    let info = StoreInfo {
        model: run.identity().to_owned(),
        ids: items.iter().map(|i| i.id.clone()).collect(),
        preprocess: run.preprocess(),
        videos: None,
        labels: Some(items.iter().map(|i| i.label.clone()).collect())
            .filter(|l: &Vec<Option<String>>| l.iter().any(Option::is_some)),
        contents: Some(items.iter().map(|i| i.content.clone()).collect()),
    };
    Ok(EmbeddingStore::new(&features, info)?)
}

/// A run's training images and its saved model, loaded once, to embed the images in parts
/// (a database collection is filled in batches, skipping what it holds).
pub struct DatasetEmbedder {
    data: RunData,
    loaded: LoadedModel,
    identity: String,
    items: Vec<Item>,
}

impl DatasetEmbedder {
    /// Loads the data `config` names and the model at `model_path` (see [`embed_dataset`]).
    pub fn open(config: &TrainConfig, model_path: &Path) -> Result<Self> {
        let (data, loaded) = load_for_inference(config, model_path)?;
        let labels = data.train.labels.as_ref();
        let contents: Vec<String> = data.train.images.par_iter().map(pixel_hash).collect();
        let items = (data.train.ids.iter().zip(contents).enumerate())
            .map(|(row, (id, content))| Item {
                label: labels.map(|l| {
                    data.classes
                        .get(l[row])
                        .cloned()
                        .unwrap_or_else(|| l[row].to_string())
                }),
                content: Some(content),
                ..Item::new(id.clone())
            })
            .collect();
        Ok(Self {
            identity: model_identity(model_path)?,
            data,
            loaded,
            items,
        })
    }

    /// The images' items (ids, sources, labels, content hashes of their pixels as the model
    /// sees them), in row order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The model's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How the images were prepared (what a query must match).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            size: self.data.size,
            channels: self.data.channels,
            mean: self.data.mean.clone(),
            std: self.data.std.clone(),
        }
    }

    /// The features `[rows.len(), F]` of these rows' images.
    pub fn embed(&self, rows: &[usize]) -> Result<Tensor> {
        let images = &self.data.train.images;
        if let Some(&bad) = rows.iter().find(|&&r| r >= images.len()) {
            return Err(Error::Invalid {
                field: "rows",
                message: format!("row {bad} is not among the {} images", images.len()),
            });
        }
        let picked: Vec<Image> = rows.iter().map(|&r| images[r].clone()).collect();
        embed(&self.loaded.model, &picked, &self.loaded.input)
    }
}

/// A saved model loaded once to embed query images of any size and channel count, prepared
/// as a collection's images were (channels, shorter side scaled and centre-cropped,
/// normalised): what a search service keeps loaded.
pub struct QueryEmbedder {
    _vs: VarStore,
    model: EmbeddingModel,
    input: Input,
    preprocess: Preprocess,
    identity: String,
}

impl QueryEmbedder {
    /// Loads `model_path` to embed queries prepared as `preprocess` says, on `device`.
    pub fn open(model_path: &Path, preprocess: &Preprocess, device: Device) -> Result<Self> {
        let (vs, model) = load_model(model_path, device)?;
        let input = Input {
            device,
            precision: Precision::Fp32,
            format: Input::format(&preprocess.mean, &preprocess.std, false)?,
        };
        Ok(Self {
            _vs: vs,
            model,
            input,
            preprocess: preprocess.clone(),
            identity: model_identity(model_path)?,
        })
    }

    /// The model's identity (the SHA-256 of its weights file).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The features `[N, F]` of `images`.
    pub fn embed(&self, images: Vec<image::DynamicImage>) -> Result<Tensor> {
        let prepared: Vec<Image> = images.into_iter().map(|i| self.prepare(i)).collect();
        self.embed_prepared(&prepared)
    }

    /// An image of any size and channel count as the model takes it: the collection's
    /// channels, the shorter side scaled to its size and the centre cropped square.
    pub fn prepare(&self, image: image::DynamicImage) -> Image {
        let pre = &self.preprocess;
        let channels = match pre.channels {
            1 => Channels::Gray,
            4 => Channels::Rgba,
            _ => Channels::Rgb,
        };
        let resize = Resize::ShorterSideThenCenterCrop {
            size: pre.size as u32,
        };
        conform(image, channels, resize)
    }

    /// The features `[N, F]` of images already [prepared](QueryEmbedder::prepare).
    pub fn embed_prepared(&self, images: &[Image]) -> Result<Tensor> {
        embed(&self.model, images, &self.input)
    }
}

/// The backbone features `[1, F]` of a query image of any size and channel count, prepared
/// as `store`'s images were (see [`QueryEmbedder`]). The model file must be the one that
/// made the store.
pub fn embed_query(
    model_path: &Path,
    store: &EmbeddingStore,
    image: image::DynamicImage,
    device: Device,
) -> Result<Tensor> {
    store.check_model(&model_identity(model_path)?)?;
    QueryEmbedder::open(model_path, &store.info().preprocess, device)?.embed(vec![image])
}
