//! Published augmentation recipes.

use std::sync::Arc;

use crate::{
    ColorJitter, Compose, GaussianBlur, RandomApply, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop, RandomSolarize, Result, Transform,
};

/// Colour jitter strengths: brightness, contrast, saturation, hue.
type Jitter = [f64; 4];

/// The shape most recipes share: random resized crop to `size` with `scale` (ratio 3/4-4/3),
/// horizontal flip (p 0.5), `jitter` with p 0.8, grayscale (p 0.2), then Gaussian blur
/// (kernel 10 % of the size, sigma 0.1-2) with `blur_p` and solarization (threshold 128) with
/// `solarize_p`; steps with probability 0 are left out.
fn recipe(
    size: usize,
    scale: (f64, f64),
    jitter: Jitter,
    blur_p: f64,
    solarize_p: f64,
) -> Result<Compose> {
    let [b, c, s, h] = jitter;
    let mut steps: Vec<Arc<dyn Transform>> = vec![
        Arc::new(RandomResizedCrop::new(
            (size, size),
            scale,
            (3.0 / 4.0, 4.0 / 3.0),
        )?),
        Arc::new(RandomHorizontalFlip::new(0.5)?),
        Arc::new(RandomApply::new(
            Arc::new(ColorJitter::new(b, c, s, h)?),
            0.8,
        )?),
        Arc::new(RandomGrayscale::new(0.2)?),
    ];
    if blur_p > 0.0 {
        steps.push(Arc::new(RandomApply::new(
            Arc::new(GaussianBlur::new(blur_kernel(size), (0.1, 2.0))?),
            blur_p,
        )?));
    }
    if solarize_p > 0.0 {
        steps.push(Arc::new(RandomSolarize::new(128, solarize_p)?));
    }
    Ok(Compose(steps))
}

/// The blur kernel SimCLR and BYOL use: 10 % of the image size, made odd.
fn blur_kernel(size: usize) -> usize {
    ((size as f64 * 0.1) as usize) | 1
}

/// SimCLR's view (Chen et al., 2020, appendix A; lightly's `SimCLRTransform` defaults):
/// random resized crop to `size` (scale 0.08-1), horizontal flip (p 0.5), colour jitter
/// (0.8 s, 0.8 s, 0.8 s, 0.2 s with strength `s`) with p 0.8, grayscale (p 0.2), and with
/// `blur`, Gaussian blur with p 0.5, kernel 10 % of the size (odd), sigma 0.1-2.
pub fn simclr(size: usize, strength: f64, blur: bool) -> Result<Compose> {
    let s = strength;
    recipe(
        size,
        (0.08, 1.0),
        [0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s],
        if blur { 0.5 } else { 0.0 },
        0.0,
    )
}

/// The view of benchmark W1 (Fashion-MNIST): random resized crop to 28 (scale 0.2-1, ratio
/// 3/4-4/3), horizontal flip (p 0.5), colour jitter 0.4, 0.4, 0.4, 0.1 (lightly's
/// `cj_strength` 0.5) with p 0.8, grayscale (p 0.2), no blur.
pub fn w1() -> Result<Compose> {
    recipe(28, (0.2, 1.0), [0.4, 0.4, 0.4, 0.1], 0.0, 0.0)
}

/// MoCo v2's view (Chen, Fan, Girshick and He, 2020), in its order: random resized crop to
/// `size` (scale 0.2-1), colour jitter 0.4, 0.4, 0.4, 0.1 with p 0.8, grayscale (p 0.2),
/// Gaussian blur (sigma 0.1-2) with p 0.5, horizontal flip.
pub fn moco_v2(size: usize) -> Result<Compose> {
    Ok(Compose(vec![
        Arc::new(RandomResizedCrop::new(
            (size, size),
            (0.2, 1.0),
            (3.0 / 4.0, 4.0 / 3.0),
        )?),
        Arc::new(RandomApply::new(
            Arc::new(ColorJitter::new(0.4, 0.4, 0.4, 0.1)?),
            0.8,
        )?),
        Arc::new(RandomGrayscale::new(0.2)?),
        Arc::new(RandomApply::new(
            Arc::new(GaussianBlur::new(blur_kernel(size), (0.1, 2.0))?),
            0.5,
        )?),
        Arc::new(RandomHorizontalFlip::new(0.5)?),
    ]))
}

/// BYOL's two asymmetric views (Grill et al., 2020, table 6): random resized crop to `size`
/// (scale 0.08-1), flip, colour jitter 0.4, 0.4, 0.2, 0.1 with p 0.8, grayscale (p 0.2), then
/// Gaussian blur with p 1.0 and 0.1, and solarization with p 0.0 and 0.2.
pub fn byol(size: usize) -> Result<[Compose; 2]> {
    let jitter = [0.4, 0.4, 0.2, 0.1];
    Ok([
        recipe(size, (0.08, 1.0), jitter, 1.0, 0.0)?,
        recipe(size, (0.08, 1.0), jitter, 0.1, 0.2)?,
    ])
}

/// SwAV's crop scale of the local views of multi-crop.
pub const LOCAL_SCALE: (f64, f64) = (0.05, 0.14);

/// SwAV's colour jitter (SimCLR's at strength 1).
const SWAV_JITTER: Jitter = [0.8, 0.8, 0.8, 0.2];

/// Multi-crop (Caron et al., SwAV, 2020): two global views of `global_size` (scale
/// 0.14-1) and `locals` local views ([`local_view`] of `local_size`, scale
/// [`LOCAL_SCALE`]), each with a flip, colour jitter 0.8, 0.8, 0.8, 0.2 with p 0.8,
/// grayscale (p 0.2) and Gaussian blur with p 0.5.
pub fn multi_crop(global_size: usize, local_size: usize, locals: usize) -> Result<Vec<Compose>> {
    let mut views = vec![
        recipe(global_size, (0.14, 1.0), SWAV_JITTER, 0.5, 0.0)?,
        recipe(global_size, (0.14, 1.0), SWAV_JITTER, 0.5, 0.0)?,
    ];
    for _ in 0..locals {
        views.push(local_view(local_size, LOCAL_SCALE)?);
    }
    Ok(views)
}

/// One local view of multi-crop: a random resized crop of `scale` of the area to `size`,
/// then SwAV's flip, colour jitter (p 0.8), grayscale (p 0.2) and Gaussian blur (p 0.5).
pub fn local_view(size: usize, scale: (f64, f64)) -> Result<Compose> {
    recipe(size, scale, SWAV_JITTER, 0.5, 0.0)
}
