//! Published augmentation recipes, as [`ViewRecipe`]s whose every parameter can be changed
//! before they are built.

use std::sync::Arc;

use crate::{
    ColorJitter, Compose, GaussianBlur, RandomApply, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop, RandomRotation, RandomSolarize, Result, Transform,
};

/// The parameters of one view: random resized crop to `size` (ratio 3/4-4/3), then with
/// their probabilities a rotation about the centre (uncovered pixels black), a horizontal
/// flip, colour jitter, grayscale, Gaussian blur (kernel 10 % of the size, made odd, sigma
/// 0.1-2) and solarization (threshold 128). Steps with probability 0 are left out.
///
/// ```
/// use contrastive_augment::presets::ViewRecipe;
/// // SimCLR's view at 32 pixels, with gentler crops and a small rotation.
/// let recipe = ViewRecipe {
///     crop_scale: (0.2, 1.0),
///     rotation_degrees: 10.0,
///     rotation_p: 0.5,
///     ..ViewRecipe::simclr(32, 1.0, true)
/// };
/// let view = recipe.build()?;
/// assert_eq!(view.0.len(), 6);
/// # Ok::<(), contrastive_augment::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewRecipe {
    /// Side of the square view.
    pub size: usize,
    /// Area range of the crop, as fractions of the image.
    pub crop_scale: (f64, f64),
    /// Largest rotation, degrees either way (0: none).
    pub rotation_degrees: f64,
    /// Probability of the rotation.
    pub rotation_p: f64,
    /// Probability of the horizontal flip.
    pub flip_p: f64,
    /// Colour jitter strengths: brightness, contrast, saturation, hue (SimCLR's at strength
    /// `s` is `[0.8 s, 0.8 s, 0.8 s, 0.2 s]`).
    pub jitter: [f64; 4],
    /// Probability of the colour jitter.
    pub jitter_p: f64,
    /// Probability of grayscale.
    pub grayscale_p: f64,
    /// Probability of the Gaussian blur.
    pub blur_p: f64,
    /// Probability of solarization.
    pub solarize_p: f64,
}

impl ViewRecipe {
    /// The shape most recipes share: flip p 0.5, jitter p 0.8, grayscale p 0.2, no rotation.
    fn common(size: usize, crop_scale: (f64, f64), jitter: [f64; 4], blur_p: f64) -> Self {
        Self {
            size,
            crop_scale,
            rotation_degrees: 0.0,
            rotation_p: 0.0,
            flip_p: 0.5,
            jitter,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p,
            solarize_p: 0.0,
        }
    }

    /// SimCLR's view (Chen et al., 2020, appendix A; lightly's `SimCLRTransform` defaults):
    /// crop scale 0.08-1, flip p 0.5, colour jitter (0.8 s, 0.8 s, 0.8 s, 0.2 s with
    /// strength `s`) p 0.8, grayscale p 0.2, and with `blur` Gaussian blur p 0.5.
    pub fn simclr(size: usize, strength: f64, blur: bool) -> Self {
        let s = strength;
        Self::common(
            size,
            (0.08, 1.0),
            [0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s],
            if blur { 0.5 } else { 0.0 },
        )
    }

    /// The view of benchmark W1 (Fashion-MNIST): 28 pixels, crop scale 0.2-1, flip p 0.5,
    /// colour jitter 0.4, 0.4, 0.4, 0.1 (lightly's `cj_strength` 0.5) p 0.8, grayscale
    /// p 0.2, no blur.
    pub fn w1() -> Self {
        Self::common(28, (0.2, 1.0), [0.4, 0.4, 0.4, 0.1], 0.0)
    }

    /// MoCo v2's view (Chen, Fan, Girshick and He, 2020): crop scale 0.2-1, colour jitter
    /// 0.4, 0.4, 0.4, 0.1 p 0.8, grayscale p 0.2, Gaussian blur p 0.5, flip p 0.5. (MoCo v2
    /// flips last; the flip commutes with jitter, grayscale and the symmetric blur, so
    /// flipping right after the crop gives the same views.)
    pub fn moco_v2(size: usize) -> Self {
        Self::common(size, (0.2, 1.0), [0.4, 0.4, 0.4, 0.1], 0.5)
    }

    /// BYOL's two asymmetric views (Grill et al., 2020, table 6): crop scale 0.08-1, flip,
    /// colour jitter 0.4, 0.4, 0.2, 0.1 p 0.8, grayscale p 0.2, then Gaussian blur with p
    /// 1.0 and 0.1, and solarization with p 0.0 and 0.2.
    pub fn byol(size: usize) -> [Self; 2] {
        let jitter = [0.4, 0.4, 0.2, 0.1];
        [
            Self::common(size, (0.08, 1.0), jitter, 1.0),
            Self {
                solarize_p: 0.2,
                ..Self::common(size, (0.08, 1.0), jitter, 0.1)
            },
        ]
    }

    /// SwAV's global view of multi-crop (Caron et al., 2020): crop scale 0.14-1, flip,
    /// colour jitter 0.8, 0.8, 0.8, 0.2 p 0.8, grayscale p 0.2, Gaussian blur p 0.5.
    pub fn swav_global(size: usize) -> Self {
        Self::common(size, (0.14, 1.0), SWAV_JITTER, 0.5)
    }

    /// A local view of multi-crop: a crop of `scale` of the area to `size`, then SwAV's
    /// flip, colour jitter, grayscale and blur.
    pub fn local(size: usize, scale: (f64, f64)) -> Self {
        Self::common(size, scale, SWAV_JITTER, 0.5)
    }

    /// The transform; parameters out of range are errors naming the step.
    pub fn build(&self) -> Result<Compose> {
        let (degrees, [b, c, s, h]) = (self.rotation_degrees, self.jitter);
        let steps = [
            step(true, || {
                RandomResizedCrop::new(
                    (self.size, self.size),
                    self.crop_scale,
                    (3.0 / 4.0, 4.0 / 3.0),
                )
            })?,
            step(degrees > 0.0 && self.rotation_p > 0.0, || {
                RandomApply::new(
                    Arc::new(RandomRotation::new(degrees, vec![0])?),
                    self.rotation_p,
                )
            })?,
            step(self.flip_p > 0.0, || RandomHorizontalFlip::new(self.flip_p))?,
            step(self.jitter_p > 0.0, || {
                RandomApply::new(Arc::new(ColorJitter::new(b, c, s, h)?), self.jitter_p)
            })?,
            step(self.grayscale_p > 0.0, || {
                RandomGrayscale::new(self.grayscale_p)
            })?,
            step(self.blur_p > 0.0, || {
                let blur = GaussianBlur::new(blur_kernel(self.size), (0.1, 2.0))?;
                RandomApply::new(Arc::new(blur), self.blur_p)
            })?,
            step(self.solarize_p > 0.0, || {
                RandomSolarize::new(128, self.solarize_p)
            })?,
        ];
        Ok(Compose(steps.into_iter().flatten().collect()))
    }
}

/// The names [`named`] knows.
pub const NAMES: [&str; 5] = ["w1", "simclr", "simclr-blur", "moco-v2", "byol"];

/// The recipe called `name` for `size`-pixel views, one [`ViewRecipe`] per distinct view
/// (BYOL has two): `w1` (always 28 pixels), `simclr`, `simclr-blur` (SimCLR's at strength 1,
/// without and with blur), `moco-v2` or `byol`; `None` for any other name.
pub fn named(name: &str, size: usize) -> Option<Vec<ViewRecipe>> {
    Some(match name {
        "w1" => vec![ViewRecipe::w1()],
        "simclr" => vec![ViewRecipe::simclr(size, 1.0, false)],
        "simclr-blur" => vec![ViewRecipe::simclr(size, 1.0, true)],
        "moco-v2" => vec![ViewRecipe::moco_v2(size)],
        "byol" => ViewRecipe::byol(size).to_vec(),
        _ => return None,
    })
}

/// `make`'s transform where `on`, else nothing.
fn step<T: Transform + 'static>(
    on: bool,
    make: impl FnOnce() -> Result<T>,
) -> Result<Option<Arc<dyn Transform>>> {
    Ok(if on { Some(Arc::new(make()?)) } else { None })
}

/// The blur kernel SimCLR and BYOL use: 10 % of the image size, made odd.
fn blur_kernel(size: usize) -> usize {
    ((size as f64 * 0.1) as usize) | 1
}

/// SwAV's crop scale of the local views of multi-crop.
pub const LOCAL_SCALE: (f64, f64) = (0.05, 0.14);

/// SwAV's colour jitter (SimCLR's at strength 1).
const SWAV_JITTER: [f64; 4] = [0.8, 0.8, 0.8, 0.2];

/// Multi-crop (Caron et al., SwAV, 2020): two [`ViewRecipe::swav_global`] views of
/// `global_size` and `locals` [`ViewRecipe::local`] views of `local_size` (scale
/// [`LOCAL_SCALE`]).
pub fn multi_crop(global_size: usize, local_size: usize, locals: usize) -> Result<Vec<Compose>> {
    let global = ViewRecipe::swav_global(global_size).build()?;
    let local = ViewRecipe::local(local_size, LOCAL_SCALE).build()?;
    let mut views = vec![global.clone(), global];
    views.extend(std::iter::repeat_n(local, locals));
    Ok(views)
}
