//! Published augmentation recipes.

use std::sync::Arc;

use crate::{
    ColorJitter, Compose, GaussianBlur, RandomApply, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop, Result, Transform,
};

/// SimCLR's view (Chen et al., 2020, appendix A; lightly's `SimCLRTransform` defaults):
/// random resized crop to `size` (scale 0.08-1), horizontal flip (p 0.5), colour jitter
/// (0.8 s, 0.8 s, 0.8 s, 0.2 s with strength `s`) with p 0.8, grayscale (p 0.2), and with
/// `blur`, Gaussian blur with p 0.5, kernel 10 % of the size (odd), sigma 0.1-2.
pub fn simclr(size: usize, strength: f64, blur: bool) -> Result<Compose> {
    let mut steps: Vec<Arc<dyn Transform>> = vec![
        Arc::new(RandomResizedCrop::new(
            (size, size),
            (0.08, 1.0),
            (3.0 / 4.0, 4.0 / 3.0),
        )?),
        Arc::new(RandomHorizontalFlip::new(0.5)?),
        Arc::new(RandomApply::new(
            Arc::new(ColorJitter::new(
                0.8 * strength,
                0.8 * strength,
                0.8 * strength,
                0.2 * strength,
            )?),
            0.8,
        )?),
        Arc::new(RandomGrayscale::new(0.2)?),
    ];
    if blur {
        let kernel = ((size as f64 * 0.1) as usize) | 1;
        steps.push(Arc::new(RandomApply::new(
            Arc::new(GaussianBlur::new(kernel, (0.1, 2.0))?),
            0.5,
        )?));
    }
    Ok(Compose(steps))
}

/// The view of benchmark W1 (Fashion-MNIST): random resized crop to 28 (scale 0.2-1, ratio
/// 3/4-4/3), horizontal flip (p 0.5), colour jitter 0.4, 0.4, 0.4, 0.1 (lightly's
/// `cj_strength` 0.5) with p 0.8, grayscale (p 0.2), no blur.
pub fn w1() -> Result<Compose> {
    Ok(Compose(vec![
        Arc::new(RandomResizedCrop::new(
            (28, 28),
            (0.2, 1.0),
            (3.0 / 4.0, 4.0 / 3.0),
        )?),
        Arc::new(RandomHorizontalFlip::new(0.5)?),
        Arc::new(RandomApply::new(
            Arc::new(ColorJitter::new(0.4, 0.4, 0.4, 0.1)?),
            0.8,
        )?),
        Arc::new(RandomGrayscale::new(0.2)?),
    ]))
}
