//! `contrastive-models`: the networks that make embeddings.
//!
//! - [`SmallCnn`]: the backbone of benchmark W1 (six 3x3 conv + batch-norm + ReLU blocks,
//!   widths 32, 32, 64, 64, 128, 128, two max-pools, global average pooling -> 128).
//! - [`ResNet`]: ResNet-18, -34 and -50 with the ImageNet stem (7x7 stride 2 + max-pool) or
//!   the CIFAR stem (3x3 stride 1, no max-pool), any number of input channels, without the
//!   classifier. Parameter names and shapes are torchvision's `state_dict` (tested against
//!   torchvision's own), so weights convert both ways.
//! - [`ProjectionHead`]: the MLP heads of SimCLR, MoCo v2 and BYOL (projection and
//!   prediction), named as lightly names them.
//! - [`EmbeddingModel`]: a backbone and a head built from a [`ModelConfig`], which
//!   [`save_model`] stores in the weights file so [`load_model`] can rebuild it.
//! - [`load_torchvision`] and [`save_torchvision`]: backbone weights in torchvision's
//!   `state_dict` layout (with `num_batches_tracked`, without `fc`).
//!
//! ```
//! use contrastive_models::{ProjectionHead, ResNet, ResNetDepth, Stem};
//! use contrastive_tensor::{Device, Encoder, Kind, ModuleT, Tensor, nn};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let backbone = ResNet::new(&(vs.root() / "backbone"), ResNetDepth::R18, 3, Stem::Cifar);
//! let head = ProjectionHead::simclr(&(vs.root() / "head"), backbone.out_dim(), 512, 128);
//! let images = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
//! let z = head.forward_t(&backbone.forward_t(&images, false), false);
//! assert_eq!(z.size(), [2, 128]);
//! ```

mod embedding;
mod error;
mod heads;
mod norm;
mod resnet;
mod small_cnn;
mod torchvision;

pub use crate::embedding::{
    Backbone, CONFIG_KEY, EmbeddingModel, HeadKind, ModelConfig, load_model, save_model,
};
pub use crate::error::{Error, Result};
pub use crate::heads::ProjectionHead;
pub use crate::resnet::{ResNet, ResNetDepth, Stem};
pub use crate::small_cnn::SmallCnn;
pub use crate::torchvision::{load_torchvision, save_torchvision};

use contrastive_tensor::nn;

/// A 3x3 (or `k`x`k`) convolution without bias, as every backbone here uses before batch-norm,
/// initialised as torchvision does (Kaiming normal, fan-out, ReLU gain).
pub(crate) fn conv(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, config)
}
