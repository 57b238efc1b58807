//! A backbone with its projection head, described by a [`ModelConfig`] that travels with the
//! weights.

use std::collections::BTreeMap;
use std::path::Path;

use contrastive_tensor::{Device, Encoder, ModuleT, SafetensorsFile, Tensor, nn, save_var_store};
use serde::{Deserialize, Serialize};

use crate::{Error, ProjectionHead, ResNet, ResNetDepth, Result, SmallCnn, Stem};

/// Which backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backbone {
    /// [`SmallCnn`], the network of benchmark W1.
    #[serde(rename = "small-cnn")]
    SmallCnn,
    /// [`ResNet`] of a depth.
    #[serde(rename = "resnet")]
    ResNet(ResNetDepth),
}

impl std::str::FromStr for Backbone {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "small-cnn" => Ok(Backbone::SmallCnn),
            "resnet18" => Ok(Backbone::ResNet(ResNetDepth::R18)),
            "resnet34" => Ok(Backbone::ResNet(ResNetDepth::R34)),
            "resnet50" => Ok(Backbone::ResNet(ResNetDepth::R50)),
            _ => Err(Error::Invalid {
                field: "backbone",
                message: format!("{s:?} is not one of small-cnn, resnet18, resnet34, resnet50"),
            }),
        }
    }
}

impl std::fmt::Display for Backbone {
    /// The name [`FromStr`](std::str::FromStr) reads: `small-cnn`, `resnet18`...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backbone::SmallCnn => f.write_str("small-cnn"),
            Backbone::ResNet(ResNetDepth::R18) => f.write_str("resnet18"),
            Backbone::ResNet(ResNetDepth::R34) => f.write_str("resnet34"),
            Backbone::ResNet(ResNetDepth::R50) => f.write_str("resnet50"),
        }
    }
}

/// The projection head on top of the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// No head: the loss sees the backbone's features.
    None,
    /// Linear, BatchNorm, ReLU, Linear ([`ProjectionHead::simclr`]).
    Simclr,
    /// Linear, ReLU, Linear ([`ProjectionHead::moco_v2`]).
    MocoV2,
}

/// Everything needed to rebuild a model's variables: saved beside its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The backbone.
    pub backbone: Backbone,
    /// Channels of the input images.
    pub in_channels: i64,
    /// The ResNet stem (ignored by the small CNN).
    pub stem: Stem,
    /// The head.
    pub head: HeadKind,
    /// Hidden width of the head.
    pub head_hidden: i64,
    /// Output width of the head.
    pub head_out: i64,
}

/// The metadata key under which [`save_model`] stores the config.
pub const CONFIG_KEY: &str = "contrastive.model_config";

/// A backbone (variables under `backbone.`) and an optional head (under `head.`).
#[derive(Debug)]
pub struct EmbeddingModel {
    backbone: Box<dyn EncoderDebug>,
    head: Option<ProjectionHead>,
    config: ModelConfig,
}

/// An [`Encoder`] that can be printed (every backbone here).
trait EncoderDebug: Encoder + std::fmt::Debug + Send {}
impl<T: Encoder + std::fmt::Debug + Send> EncoderDebug for T {}

impl EmbeddingModel {
    /// Builds the model's variables under `p`.
    pub fn new(p: &nn::Path, config: ModelConfig) -> Self {
        let b = p / "backbone";
        let backbone: Box<dyn EncoderDebug> = match config.backbone {
            Backbone::SmallCnn => Box::new(SmallCnn::new(&b, config.in_channels)),
            Backbone::ResNet(depth) => {
                Box::new(ResNet::new(&b, depth, config.in_channels, config.stem))
            }
        };
        let (h, dim) = (p / "head", backbone.out_dim());
        let head = match config.head {
            HeadKind::None => None,
            HeadKind::Simclr => Some(ProjectionHead::simclr(
                &h,
                dim,
                config.head_hidden,
                config.head_out,
            )),
            HeadKind::MocoV2 => Some(ProjectionHead::moco_v2(
                &h,
                dim,
                config.head_hidden,
                config.head_out,
            )),
        };
        Self {
            backbone,
            head,
            config,
        }
    }

    /// The config it was built from.
    pub fn config(&self) -> ModelConfig {
        self.config
    }

    /// Backbone features `[N, F]` (what search and evaluation use).
    pub fn features(&self, images: &Tensor, train: bool) -> Tensor {
        self.backbone.forward_t(images, train)
    }

    /// The head applied to features (the features themselves without a head).
    pub fn project(&self, features: &Tensor, train: bool) -> Tensor {
        match &self.head {
            Some(head) => head.forward_t(features, train),
            None => features.shallow_clone(),
        }
    }

    /// Width of the backbone's features.
    pub fn feature_dim(&self) -> i64 {
        self.backbone.out_dim()
    }
}

impl ModuleT for EmbeddingModel {
    /// Images to projected embeddings (what the loss sees).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.project(&self.features(xs, train), train)
    }
}

impl Encoder for EmbeddingModel {
    fn out_dim(&self) -> i64 {
        match &self.head {
            Some(head) => head.out_dim(),
            None => self.backbone.out_dim(),
        }
    }
}

/// Saves every variable of `vs` (holding a model built with `config`) and the config itself
/// (as JSON in the file's metadata) to a `.safetensors` file, atomically.
pub fn save_model(vs: &nn::VarStore, config: &ModelConfig, path: &Path) -> Result<()> {
    let metadata = BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        serde_json::to_string(config).expect("a model config is plain data"),
    )]);
    Ok(save_var_store(vs, path, &metadata)?)
}

/// Reads a file written by [`save_model`]: rebuilds the model on `device` from the stored
/// config and loads the weights strictly.
pub fn load_model(path: &Path, device: Device) -> Result<(nn::VarStore, EmbeddingModel)> {
    let file = SafetensorsFile::read(path)?;
    let text = file
        .metadata
        .get(CONFIG_KEY)
        .ok_or_else(|| Error::NotAModel {
            path: path.to_path_buf(),
            message: format!("it has no {CONFIG_KEY:?} metadata"),
        })?;
    let config: ModelConfig = serde_json::from_str(text).map_err(|e| Error::NotAModel {
        path: path.to_path_buf(),
        message: format!("its model config does not parse: {e}"),
    })?;
    let vs = nn::VarStore::new(device);
    let model = EmbeddingModel::new(&vs.root(), config);
    file.copy_into(&vs.variables())?;
    Ok((vs, model))
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::Kind;

    use super::*;

    #[test]
    fn backbone_names_read_back() {
        for backbone in [
            Backbone::SmallCnn,
            Backbone::ResNet(ResNetDepth::R18),
            Backbone::ResNet(ResNetDepth::R34),
            Backbone::ResNet(ResNetDepth::R50),
        ] {
            assert_eq!(backbone.to_string().parse::<Backbone>().unwrap(), backbone);
        }
    }

    fn config(head: HeadKind) -> ModelConfig {
        ModelConfig {
            backbone: Backbone::SmallCnn,
            in_channels: 1,
            stem: Stem::Cifar,
            head,
            head_hidden: 32,
            head_out: 16,
        }
    }

    #[test]
    fn a_saved_model_loads_back_with_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let model = EmbeddingModel::new(&vs.root(), config(HeadKind::Simclr));
        save_model(&vs, &model.config(), &path).unwrap();
        let (_, back) = load_model(&path, Device::Cpu).unwrap();
        assert_eq!(back.config(), model.config());
        let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let (a, b) = (model.forward_t(&x, false), back.forward_t(&x, false));
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
        assert_eq!(a.size(), [2, 16]);
        assert_eq!(model.features(&x, false).size(), [2, 128]);
    }

    #[test]
    fn files_without_a_config_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = EmbeddingModel::new(&vs.root(), config(HeadKind::None));
        save_var_store(&vs, &path, &BTreeMap::new()).unwrap();
        let err = load_model(&path, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(CONFIG_KEY), "{err}");
        assert!("resnet19".parse::<Backbone>().is_err());
    }
}
