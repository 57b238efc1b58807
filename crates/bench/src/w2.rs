//! W2: augmentation throughput in views per second, two views per image, on 1 and 2
//! threads: the W1 pipeline on 28 x 28 gray images, SimCLR (with blur) on 32 x 32 RGB and
//! on 224 x 224 RGB cut from 256 x 256. The peer is `bench/peers/augment_w2.py`
//! (torchvision v2 and lightly's `SimCLRTransform`, image by image on 1 thread).
//!
//! The `_batched_<device>` rows run the same views' plans on a whole batch as tensor
//! operations (`apply_plans`), on the first CUDA device where there is one, else on the CPU
//! with libtorch's threads.

use std::sync::Arc;
use std::time::Instant;

use contrastive_augment::{
    BatchFormat, Image, MultiViewPipeline, Transform, apply_plans, presets, to_batch,
};
use contrastive_tensor::{Device, Kind};

use crate::{Row, Scale, median};

/// `n` deterministic `side` x `side` images of `channels` channels.
fn images(n: usize, side: usize, channels: usize) -> Vec<Image> {
    (0..n)
        .map(|i| {
            Image::from_shape_fn((side, side, channels), |(y, x, c)| {
                ((y * 31 + x * 17 + c * 71 + i * 13) % 256) as u8
            })
        })
        .collect()
}

/// Median views per second of `pipeline` over `batch` on `threads` threads.
fn views_per_second(
    pipeline: &MultiViewPipeline,
    batch: &[Image],
    threads: usize,
    runs: usize,
) -> anyhow::Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let items: Vec<usize> = (0..batch.len()).collect();
    median_rate(batch.len() * pipeline.view_count(), runs, |epoch| {
        pool.install(|| pipeline.apply(batch, &items, epoch))?;
        Ok(())
    })
}

/// Median views per second of `pass(epoch)` (making `views` views) over epochs `1..=runs`,
/// after a warm-up pass for epoch 0.
fn median_rate(
    views: usize,
    runs: usize,
    mut pass: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    pass(0)?;
    let rates = (1..=runs.max(1) as u64)
        .map(|epoch| {
            let start = Instant::now();
            pass(epoch)?;
            Ok(views as f64 / start.elapsed().as_secs_f64())
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(median(&rates))
}

/// Median views per second of `pipeline`'s plans run batched on `device` (the batch is
/// already there, as `u8` `[N, C, H, W]`; planning is counted).
fn batched_views_per_second(
    pipeline: &MultiViewPipeline,
    batch: &[Image],
    device: Device,
    runs: usize,
) -> anyhow::Result<f64> {
    let on_device = to_batch(batch, &BatchFormat::raw())?.to_device(device);
    let dims: Vec<_> = batch.iter().map(Image::dim).collect();
    let items: Vec<usize> = (0..batch.len()).collect();
    median_rate(batch.len() * pipeline.view_count(), runs, |epoch| {
        for plans in pipeline.plans(&dims, &items, epoch)? {
            let views = apply_plans(&on_device, &plans)?;
            // Waits for the device: reading one value needs the work done.
            views.sum(Kind::Int64).int64_value(&[]);
        }
        Ok(())
    })
}

/// The W2 rows: `<pipeline>_<threads>t` in views/s, and `<pipeline>_batched_<device>` for
/// the two RGB pipelines.
pub fn rows(scale: Scale, runs: usize) -> anyhow::Result<Vec<Row>> {
    let workloads: Vec<(&str, Arc<dyn Transform>, Vec<Image>)> = vec![
        (
            "w1_28x28_gray",
            Arc::new(presets::ViewRecipe::w1().build()?),
            images(scale.pick(2048, 32), 28, 1),
        ),
        (
            "simclr_32x32_rgb_blur",
            Arc::new(presets::ViewRecipe::simclr(32, 1.0, true).build()?),
            images(scale.pick(1024, 16), 32, 3),
        ),
        (
            "simclr_224_from_256_rgb_blur",
            Arc::new(presets::ViewRecipe::simclr(224, 1.0, true).build()?),
            images(scale.pick(32, 2), 256, 3),
        ),
    ];
    let mut rows = Vec::new();
    for (name, transform, batch) in workloads {
        let pipeline = MultiViewPipeline::new(vec![transform.clone(), transform], 0);
        for threads in [1, 2] {
            let rate = views_per_second(&pipeline, &batch, threads, runs)?;
            rows.push(Row::rate(
                "W2",
                &format!("{name}_{threads}t"),
                "views/s",
                rate,
            ));
        }
        if batch[0].dim().2 == 3 {
            let device = Device::cuda_if_available();
            let rate = batched_views_per_second(&pipeline, &batch, device, runs)?;
            let place = if device.is_cuda() { "cuda" } else { "cpu" };
            rows.push(Row::rate(
                "W2",
                &format!("{name}_batched_{place}"),
                "views/s",
                rate,
            ));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_pipelines_run_on_one_and_two_threads() {
        let rows = rows(Scale::Small, 1).unwrap();
        assert_eq!(rows.len(), 8);
        assert!(rows.iter().all(|r| r.value > 0.0 && r.higher_is_better));
        assert!(rows.iter().any(|r| r.name == "w1_28x28_gray_2t"));
        assert!(
            rows.iter()
                .any(|r| r.name.starts_with("simclr_32x32_rgb_blur_batched_"))
        );
    }
}
