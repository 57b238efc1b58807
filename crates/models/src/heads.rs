//! MLP heads on top of a backbone, laid out as lightly's heads are (`layers.0`, `layers.1`,
//! ... in a sequence of Linear, optional BatchNorm1d and ReLU).

use contrastive_tensor::{Encoder, ModuleT, Tensor, nn};

use crate::norm::{BatchNorm, batch_norm1d};

#[derive(Debug)]
enum Layer {
    Linear(nn::Linear),
    BatchNorm(BatchNorm),
    Relu,
}

/// A multi-layer perceptron head.
#[derive(Debug)]
pub struct ProjectionHead {
    layers: Vec<Layer>,
    out_dim: i64,
}

impl ProjectionHead {
    /// Linear layers through `dims` (`dims[0]` in, `dims[last]` out), each but the last
    /// followed by BatchNorm1d (when `batch_norm`) and ReLU. A linear layer followed by
    /// batch-norm has no bias.
    pub fn new(p: &nn::Path, dims: &[i64], batch_norm: bool) -> Self {
        assert!(
            dims.len() >= 2,
            "ProjectionHead::new: needs at least in and out widths, got {dims:?}"
        );
        let p = p / "layers";
        let mut layers = Vec::new();
        for (i, pair) in dims.windows(2).enumerate() {
            let hidden = i + 2 < dims.len();
            let config = nn::LinearConfig {
                bias: !(hidden && batch_norm),
                ..Default::default()
            };
            layers.push(Layer::Linear(nn::linear(
                &p / layers.len(),
                pair[0],
                pair[1],
                config,
            )));
            if hidden {
                if batch_norm {
                    layers.push(Layer::BatchNorm(batch_norm1d(&p / layers.len(), pair[1])));
                }
                layers.push(Layer::Relu);
            }
        }
        Self {
            layers,
            out_dim: dims[dims.len() - 1],
        }
    }

    /// SimCLR's projection head: Linear, BatchNorm1d, ReLU, Linear (lightly's
    /// `SimCLRProjectionHead`; W1 uses 128 -> 256 -> 128).
    pub fn simclr(p: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        Self::new(p, &[input, hidden, output], true)
    }

    /// MoCo v2's projection head: Linear, ReLU, Linear (2048 -> 2048 -> 128 in the paper).
    pub fn moco_v2(p: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        Self::new(p, &[input, hidden, output], false)
    }

    /// BYOL's prediction head: Linear, BatchNorm1d, ReLU, Linear (256 -> 4096 -> 256).
    pub fn prediction(p: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        Self::new(p, &[input, hidden, output], true)
    }
}

impl ModuleT for ProjectionHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers
            .iter()
            .fold(xs.shallow_clone(), |x, layer| match layer {
                Layer::Linear(linear) => x.apply(linear),
                Layer::BatchNorm(bn) => x.apply_t(bn, train),
                Layer::Relu => x.relu(),
            })
    }
}

impl Encoder for ProjectionHead {
    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
