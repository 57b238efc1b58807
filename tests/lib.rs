//! Helpers shared by the workspace end-to-end tests in `tests/tests/`.

use std::path::Path;

use contrastive_tensor::nn;

/// The four shape classes [`write_shapes`] draws.
pub const SHAPES: [&str; 4] = ["horizontal", "vertical", "diagonal", "ring"];

/// Writes `per_class` grayscale PNG images of `size` x `size` pixels for each of four
/// shapes (a horizontal bar, a vertical bar, a diagonal, a ring) into `root/<shape>/`, each
/// at a random place over noise. The same `seed` gives the same files.
pub fn write_shapes(root: &Path, per_class: usize, size: u32, seed: u64) {
    let mut state = seed
        .wrapping_mul(2_862_933_555_777_941_757)
        .wrapping_add(12345);
    let mut next = move |m: u32| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 33) as u32) % m
    };
    let margin = size / 4;
    for (class, name) in SHAPES.iter().enumerate() {
        std::fs::create_dir_all(root.join(name)).expect("the folder can be created");
        for i in 0..per_class {
            let cx = (margin + next(size - 2 * margin)) as i32;
            let cy = (margin + next(size - 2 * margin)) as i32;
            let img = image::GrayImage::from_fn(size, size, |x, y| {
                let (dx, dy) = (x as i32 - cx, y as i32 - cy);
                let on = match class {
                    0 => dy.abs() <= 1 && dx.abs() <= 7,
                    1 => dx.abs() <= 1 && dy.abs() <= 7,
                    2 => (dx - dy).abs() <= 1 && dx.abs() <= 6,
                    _ => (dx * dx + dy * dy - 30).abs() <= 8,
                };
                image::Luma([if on { 220 } else { next(70) as u8 }])
            });
            img.save(root.join(name).join(format!("{i}.png")))
                .expect("the image can be written");
        }
    }
}

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
