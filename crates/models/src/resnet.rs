//! ResNet-18/34/50 (He et al., 2016) in torchvision's layout (v1.5: the stride of a bottleneck
//! is on its 3x3 convolution), without the classifier.

use contrastive_tensor::{Encoder, ModuleT, Tensor, nn};
use serde::{Deserialize, Serialize};

use crate::conv;
use crate::norm::{BatchNorm, batch_norm2d};

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResNetDepth {
    /// Basic blocks, 2-2-2-2; 512-wide output.
    R18,
    /// Basic blocks, 3-4-6-3; 512-wide output.
    R34,
    /// Bottleneck blocks, 3-4-6-3; 2048-wide output.
    R50,
}

impl ResNetDepth {
    fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::R18 => [2, 2, 2, 2],
            ResNetDepth::R34 | ResNetDepth::R50 => [3, 4, 6, 3],
        }
    }

    fn expansion(self) -> i64 {
        if self == ResNetDepth::R50 { 4 } else { 1 }
    }
}

/// The first layers of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 7x7 convolution with stride 2, then a 3x3 max-pool with stride 2 (for 224-pixel images).
    ImageNet,
    /// 3x3 convolution with stride 1 and no max-pool (for 32-pixel images, as SimCLR's CIFAR
    /// experiments).
    Cifar,
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, BatchNorm)>,
    downsample: Option<(nn::Conv2D, BatchNorm)>,
}

impl Block {
    fn new(p: &nn::Path, in_planes: i64, planes: i64, stride: i64, depth: ResNetDepth) -> Self {
        let bn = |name: &str, c: i64| batch_norm2d(p / name, c);
        let expansion = depth.expansion();
        let convs = if expansion == 1 {
            vec![
                (
                    conv(p / "conv1", in_planes, planes, 3, stride, 1),
                    bn("bn1", planes),
                ),
                (
                    conv(p / "conv2", planes, planes, 3, 1, 1),
                    bn("bn2", planes),
                ),
            ]
        } else {
            vec![
                (
                    conv(p / "conv1", in_planes, planes, 1, 1, 0),
                    bn("bn1", planes),
                ),
                (
                    conv(p / "conv2", planes, planes, 3, stride, 1),
                    bn("bn2", planes),
                ),
                (
                    conv(p / "conv3", planes, planes * expansion, 1, 1, 0),
                    bn("bn3", planes * expansion),
                ),
            ]
        };
        let downsample = (stride != 1 || in_planes != planes * expansion).then(|| {
            let d = p / "downsample";
            (
                conv(&d / "0", in_planes, planes * expansion, 1, stride, 0),
                batch_norm2d(&d / "1", planes * expansion),
            )
        });
        Self { convs, downsample }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut out = xs.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            out = out.apply(conv).apply_t(bn, train);
            if i < last {
                out = out.relu();
            }
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (out + identity).relu()
    }
}

/// A ResNet backbone: images `[N, C, H, W]` to features `[N, 512]` (or 2048 for ResNet-50).
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    stem: Stem,
    layers: Vec<Block>,
    out_dim: i64,
}

impl ResNet {
    /// A ResNet of `depth` for `in_channels`-channel images with `stem`, its variables under
    /// `p` (`conv1`, `bn1`, `layer1.0.conv1`, ... as torchvision names them).
    pub fn new(p: &nn::Path, depth: ResNetDepth, in_channels: i64, stem: Stem) -> Self {
        let conv1 = match stem {
            Stem::ImageNet => conv(p / "conv1", in_channels, 64, 7, 2, 3),
            Stem::Cifar => conv(p / "conv1", in_channels, 64, 3, 1, 1),
        };
        let bn1 = batch_norm2d(p / "bn1", 64);
        let mut in_planes = 64;
        let mut layers = Vec::new();
        for (stage, (&count, planes)) in depth.blocks().iter().zip([64, 128, 256, 512]).enumerate()
        {
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let path = p / format!("layer{}", stage + 1) / b;
                layers.push(Block::new(&path, in_planes, planes, stride, depth));
                in_planes = planes * depth.expansion();
            }
        }
        Self {
            conv1,
            bn1,
            stem,
            layers,
            out_dim: in_planes,
        }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        if self.stem == Stem::ImageNet {
            x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for block in &self.layers {
            x = block.forward_t(&x, train);
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

impl Encoder for ResNet {
    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
