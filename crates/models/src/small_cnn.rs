//! The small CNN of benchmark W1.

use contrastive_tensor::{Encoder, ModuleT, Tensor, nn};

use crate::conv;
use crate::norm::{BatchNorm, batch_norm2d};

/// Six 3x3 conv (no bias) + batch-norm + ReLU blocks of widths 32, 32 | max-pool 2 | 64, 64 |
/// max-pool 2 | 128, 128 | global average pool -> 128. Blocks are named `blocks.{i}.conv` and
/// `blocks.{i}.bn`.
#[derive(Debug)]
pub struct SmallCnn {
    blocks: Vec<(nn::Conv2D, BatchNorm)>,
}

impl SmallCnn {
    /// Widths of the six blocks.
    pub const WIDTHS: [i64; 6] = [32, 32, 64, 64, 128, 128];

    /// A small CNN for images of `in_channels` channels, its variables under `p`.
    pub fn new(p: &nn::Path, in_channels: i64) -> Self {
        let mut c_in = in_channels;
        let blocks = Self::WIDTHS
            .iter()
            .enumerate()
            .map(|(i, &c_out)| {
                let block = p / "blocks" / i;
                let pair = (
                    conv(&block / "conv", c_in, c_out, 3, 1, 1),
                    batch_norm2d(&block / "bn", c_out),
                );
                c_in = c_out;
                pair
            })
            .collect();
        Self { blocks }
    }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            x = x.apply(conv).apply_t(bn, train).relu();
            if i == 1 || i == 3 {
                x = x.max_pool2d_default(2);
            }
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

impl Encoder for SmallCnn {
    fn out_dim(&self) -> i64 {
        Self::WIDTHS[5]
    }
}
