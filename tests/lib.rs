//! Helpers shared by the workspace end-to-end tests in `tests/tests/`.

use contrastive_tensor::nn;

/// A tiny CNN for 1-channel images: two 3x3 conv + batch-norm + ReLU blocks (16 and 32
/// channels, no bias) with a 2x2 max-pool between, global average pooling, and a linear layer
/// to `outputs`.
pub fn tiny_cnn(vs: &nn::VarStore, outputs: i64) -> nn::SequentialT {
    let p = vs.root();
    let conv = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(&p / "conv1", 1, 16, 3, conv))
        .add(nn::batch_norm2d(&p / "bn1", 16, Default::default()))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add(nn::conv2d(&p / "conv2", 16, 32, 3, conv))
        .add(nn::batch_norm2d(&p / "bn2", 32, Default::default()))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 32, outputs, Default::default()))
}
