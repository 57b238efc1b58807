//! Random transforms: each draws its parameters as torchvision's v2 transform of the same name
//! does, from the generator it is given, then applies the deterministic operation.

use std::fmt::Debug;
use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::invalid;
use crate::steps::{Dims, Step, apply_plan};
use crate::{Image, Interpolation, Result, Sampling};

/// A random image transform. The generator is the only source of randomness, so the same
/// generator state gives the same output.
///
/// A transform draws its parameters into a plan of deterministic [`Step`]s ([`plan`]); the
/// plan runs on one image ([`apply`], the CPU path) or, for a whole batch, on a tensor
/// device (`apply_plans`, feature `tensor`). Both draw the same parameters from the same
/// generator.
///
/// [`plan`]: Transform::plan
/// [`apply`]: Transform::apply
pub trait Transform: Send + Sync + Debug {
    /// Draws the parameters for an image of `dims` and returns the steps that apply them.
    fn plan(&self, dims: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>>;

    /// Transforms one image: its plan, run step by step.
    fn apply(&self, image: &Image, rng: &mut ChaCha8Rng) -> Result<Image> {
        apply_plan(image, &self.plan(image.dim(), rng)?)
    }
}

fn check_probability(op: &'static str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(op, "p", format!("must be in [0, 1], got {p}")))
    }
}

fn check_range(
    op: &'static str,
    field: &'static str,
    (lo, hi): (f64, f64),
    min: f64,
) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && min <= lo && lo <= hi {
        Ok(())
    } else {
        Err(invalid(
            op,
            field,
            format!("needs {min} <= min <= max, got ({lo}, {hi})"),
        ))
    }
}

/// The steps of `plan` with probability `p`, else none; one draw from `rng` decides.
fn with_probability(
    p: f64,
    rng: &mut ChaCha8Rng,
    plan: impl FnOnce(&mut ChaCha8Rng) -> Result<Vec<Step>>,
) -> Result<Vec<Step>> {
    if rng.gen_bool(p) {
        plan(rng)
    } else {
        Ok(Vec::new())
    }
}

/// The checks rotation and affine share: `degrees` >= 0 and at least one fill value.
fn check_warp(op: &'static str, degrees: f64, fill: &[u8]) -> Result<()> {
    if !(degrees.is_finite() && degrees >= 0.0) {
        return Err(invalid(
            op,
            "degrees",
            format!("must be >= 0, got {degrees}"),
        ));
    }
    if fill.is_empty() {
        return Err(invalid(op, "fill", "needs at least one value"));
    }
    Ok(())
}

/// A crop of random area and aspect ratio, resized to `size` (torchvision's
/// `RandomResizedCrop`, bilinear, antialiased).
#[derive(Debug, Clone, Copy)]
pub struct RandomResizedCrop {
    size: (usize, usize),
    scale: (f64, f64),
    ratio: (f64, f64),
    interpolation: Interpolation,
}

impl RandomResizedCrop {
    /// Output `size` `(height, width)`; area fraction in `scale`, aspect ratio (width /
    /// height) in `ratio`, drawn log-uniformly.
    pub fn new(size: (usize, usize), scale: (f64, f64), ratio: (f64, f64)) -> Result<Self> {
        const OP: &str = "RandomResizedCrop";
        if size.0 == 0 || size.1 == 0 {
            return Err(invalid(
                OP,
                "size",
                format!("must be non-zero, got {size:?}"),
            ));
        }
        check_range(OP, "scale", scale, f64::MIN_POSITIVE)?;
        check_range(OP, "ratio", ratio, f64::MIN_POSITIVE)?;
        Ok(Self {
            size,
            scale,
            ratio,
            interpolation: Interpolation::Bilinear,
        })
    }

    /// Uses `interpolation` (bilinear by default) for the resize.
    pub fn with_interpolation(self, interpolation: Interpolation) -> Self {
        Self {
            interpolation,
            ..self
        }
    }

    /// The crop window `(top, left, height, width)` for an image of `height` x `width`:
    /// ten tries at a random area and ratio, then a centre crop at the nearest allowed ratio.
    pub fn window(
        &self,
        height: usize,
        width: usize,
        rng: &mut ChaCha8Rng,
    ) -> (usize, usize, usize, usize) {
        let area = (height * width) as f64;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.gen_range(self.scale.0..=self.scale.1);
            let aspect = rng.gen_range(log_lo..=log_hi).exp();
            let w = (target * aspect).sqrt().round() as usize;
            let h = (target / aspect).sqrt().round() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.gen_range(0..=height - h);
                let left = rng.gen_range(0..=width - w);
                return (top, left, h, w);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (h, w) = if in_ratio < self.ratio.0 {
            (((width as f64) / self.ratio.0).round() as usize, width)
        } else if in_ratio > self.ratio.1 {
            (height, ((height as f64) * self.ratio.1).round() as usize)
        } else {
            (height, width)
        };
        (
            (height - h) / 2,
            (width - w) / 2,
            h.clamp(1, height),
            w.clamp(1, width),
        )
    }
}

impl Transform for RandomResizedCrop {
    fn plan(&self, (h, w, _): Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        if h == 0 || w == 0 {
            return Err(crate::error::bad_image(
                "RandomResizedCrop",
                format!("the image is {h}x{w}"),
            ));
        }
        Ok(vec![Step::ResizedCrop {
            window: self.window(h, w, rng),
            size: self.size,
            interpolation: self.interpolation,
        }])
    }
}

/// Mirrors left to right with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct RandomHorizontalFlip {
    p: f64,
}

impl RandomHorizontalFlip {
    /// Flips with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        check_probability("RandomHorizontalFlip", p)?;
        Ok(Self { p })
    }
}

impl Transform for RandomHorizontalFlip {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        with_probability(self.p, rng, |_| Ok(vec![Step::HorizontalFlip]))
    }
}

/// Brightness, contrast, saturation and hue changed by random factors, in a random order (as
/// torchvision's `ColorJitter` and SimCLR).
#[derive(Debug, Clone, Copy)]
pub struct ColorJitter {
    brightness: (f64, f64),
    contrast: (f64, f64),
    saturation: (f64, f64),
    hue: (f64, f64),
}

impl ColorJitter {
    /// Factors drawn from `[max(0, 1 - x), 1 + x]` for brightness, contrast and saturation,
    /// and a hue shift from `[-hue, hue]` (hue in `[0, 0.5]`).
    pub fn new(brightness: f64, contrast: f64, saturation: f64, hue: f64) -> Result<Self> {
        const OP: &str = "ColorJitter";
        for (field, v) in [
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(OP, field, format!("must be >= 0, got {v}")));
            }
        }
        if !(0.0..=0.5).contains(&hue) {
            return Err(invalid(
                OP,
                "hue",
                format!("must be in [0, 0.5], got {hue}"),
            ));
        }
        let around_one = |x: f64| ((1.0 - x).max(0.0), 1.0 + x);
        Ok(Self {
            brightness: around_one(brightness),
            contrast: around_one(contrast),
            saturation: around_one(saturation),
            hue: (-hue, hue),
        })
    }
}

impl Transform for ColorJitter {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let mut factors = [0.0f32; 4];
        for (slot, (lo, hi)) in [self.brightness, self.contrast, self.saturation, self.hue]
            .into_iter()
            .enumerate()
        {
            factors[slot] = if lo == hi {
                lo as f32
            } else {
                rng.gen_range(lo..=hi) as f32
            };
        }
        // Factors that change nothing (1, or a hue shift of 0) give no step.
        Ok(order
            .into_iter()
            .filter_map(|op| match op {
                0 if factors[0] != 1.0 => Some(Step::Brightness(factors[0])),
                1 if factors[1] != 1.0 => Some(Step::Contrast(factors[1])),
                2 if factors[2] != 1.0 => Some(Step::Saturation(factors[2])),
                3 if factors[3] != 0.0 => Some(Step::Hue(factors[3])),
                _ => None,
            })
            .collect())
    }
}

/// Converts to gray (keeping the channel count) with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct RandomGrayscale {
    p: f64,
}

impl RandomGrayscale {
    /// Grays with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        check_probability("RandomGrayscale", p)?;
        Ok(Self { p })
    }
}

impl Transform for RandomGrayscale {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        with_probability(self.p, rng, |_| Ok(vec![Step::Grayscale]))
    }
}

/// Gaussian blur with a random sigma.
#[derive(Debug, Clone, Copy)]
pub struct GaussianBlur {
    kernel_size: usize,
    sigma: (f64, f64),
}

impl GaussianBlur {
    /// An odd `kernel_size` and sigma drawn uniformly from `sigma` (> 0).
    pub fn new(kernel_size: usize, sigma: (f64, f64)) -> Result<Self> {
        if kernel_size.is_multiple_of(2) {
            return Err(invalid(
                "GaussianBlur",
                "kernel_size",
                format!("must be odd, got {kernel_size}"),
            ));
        }
        check_range("GaussianBlur", "sigma", sigma, f64::MIN_POSITIVE)?;
        Ok(Self { kernel_size, sigma })
    }
}

impl Transform for GaussianBlur {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        let sigma = rng.gen_range(self.sigma.0..=self.sigma.1) as f32;
        Ok(vec![Step::Blur {
            kernel_size: self.kernel_size,
            sigma,
        }])
    }
}

/// Inverts values at or above `threshold`, with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct RandomSolarize {
    threshold: u8,
    p: f64,
}

impl RandomSolarize {
    /// Solarizes at `threshold` with probability `p` in `[0, 1]`.
    pub fn new(threshold: u8, p: f64) -> Result<Self> {
        check_probability("RandomSolarize", p)?;
        Ok(Self { threshold, p })
    }
}

impl Transform for RandomSolarize {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        with_probability(self.p, rng, |_| Ok(vec![Step::Solarize(self.threshold)]))
    }
}

/// Rotation by an angle drawn from `[-degrees, degrees]` (torchvision's `RandomRotation`,
/// same size; nearest sampling unless [`RandomRotation::with_sampling`] says otherwise).
#[derive(Debug, Clone)]
pub struct RandomRotation {
    degrees: f64,
    fill: Vec<u8>,
    sampling: Sampling,
}

impl RandomRotation {
    /// Angles in `[-degrees, degrees]` (`degrees` >= 0); uncovered pixels take `fill`.
    pub fn new(degrees: f64, fill: Vec<u8>) -> Result<Self> {
        check_warp("RandomRotation", degrees, &fill)?;
        Ok(Self {
            degrees,
            fill,
            sampling: Sampling::Nearest,
        })
    }

    /// Samples the source with `sampling` (torchvision's `interpolation`).
    pub fn with_sampling(self, sampling: Sampling) -> Self {
        Self { sampling, ..self }
    }
}

impl Transform for RandomRotation {
    fn plan(&self, _: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        let angle = rng.gen_range(-self.degrees..=self.degrees);
        Ok(vec![Step::Rotate {
            angle,
            fill: self.fill.clone(),
            sampling: self.sampling,
        }])
    }
}

/// A random affine warp, its parameters drawn as torchvision's `RandomAffine` draws them:
/// angle from `[-degrees, degrees]`, translation up to `translate` of the width and height
/// (rounded to pixels), scale from `scale`, shear along x from `shear`.
#[derive(Debug, Clone)]
pub struct RandomAffine {
    degrees: f64,
    translate: (f64, f64),
    scale: (f64, f64),
    shear: (f64, f64),
    fill: Vec<u8>,
    sampling: Sampling,
}

impl RandomAffine {
    /// Samples the source with `sampling` (torchvision's `interpolation`).
    pub fn with_sampling(self, sampling: Sampling) -> Self {
        Self { sampling, ..self }
    }

    /// `translate` fractions in `[0, 1]`, `scale` with `0 < min <= max`, `shear` in degrees
    /// with `min <= max`.
    pub fn new(
        degrees: f64,
        translate: (f64, f64),
        scale: (f64, f64),
        shear: (f64, f64),
        fill: Vec<u8>,
    ) -> Result<Self> {
        const OP: &str = "RandomAffine";
        check_warp(OP, degrees, &fill)?;
        if !((0.0..=1.0).contains(&translate.0) && (0.0..=1.0).contains(&translate.1)) {
            return Err(invalid(
                OP,
                "translate",
                format!("fractions must be in [0, 1], got {translate:?}"),
            ));
        }
        check_range(OP, "scale", scale, f64::MIN_POSITIVE)?;
        check_range(OP, "shear", shear, -90.0)?;
        Ok(Self {
            degrees,
            translate,
            scale,
            shear,
            fill,
            sampling: Sampling::Nearest,
        })
    }
}

impl Transform for RandomAffine {
    fn plan(&self, (h, w, _): Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        let angle = rng.gen_range(-self.degrees..=self.degrees);
        let (max_dx, max_dy) = (self.translate.0 * w as f64, self.translate.1 * h as f64);
        let tx = rng.gen_range(-max_dx..=max_dx).round();
        let ty = rng.gen_range(-max_dy..=max_dy).round();
        let scale = rng.gen_range(self.scale.0..=self.scale.1);
        let shear = rng.gen_range(self.shear.0..=self.shear.1);
        Ok(vec![Step::Affine {
            angle,
            translate: (tx, ty),
            scale,
            shear: (shear, 0.0),
            fill: self.fill.clone(),
            sampling: self.sampling,
        }])
    }
}

/// Transforms applied in order.
#[derive(Debug, Clone)]
pub struct Compose(pub Vec<Arc<dyn Transform>>);

impl Transform for Compose {
    fn plan(&self, dims: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        let (mut steps, mut dims) = (Vec::new(), dims);
        for transform in &self.0 {
            let more = transform.plan(dims, rng)?;
            dims = more.iter().fold(dims, |d, step| step.output_dims(d));
            steps.extend(more);
        }
        Ok(steps)
    }
}

/// A transform applied with probability `p`.
#[derive(Debug, Clone)]
pub struct RandomApply {
    transform: Arc<dyn Transform>,
    p: f64,
}

impl RandomApply {
    /// Applies `transform` with probability `p` in `[0, 1]`.
    pub fn new(transform: Arc<dyn Transform>, p: f64) -> Result<Self> {
        check_probability("RandomApply", p)?;
        Ok(Self { transform, p })
    }
}

impl Transform for RandomApply {
    fn plan(&self, dims: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        with_probability(self.p, rng, |rng| self.transform.plan(dims, rng))
    }
}

/// One of several transforms, chosen uniformly.
#[derive(Debug, Clone)]
pub struct OneOf(Vec<Arc<dyn Transform>>);

impl OneOf {
    /// Chooses among `transforms` (at least one).
    pub fn new(transforms: Vec<Arc<dyn Transform>>) -> Result<Self> {
        if transforms.is_empty() {
            return Err(invalid("OneOf", "transforms", "needs at least one"));
        }
        Ok(Self(transforms))
    }
}

impl Transform for OneOf {
    fn plan(&self, dims: Dims, rng: &mut ChaCha8Rng) -> Result<Vec<Step>> {
        self.0[rng.gen_range(0..self.0.len())].plan(dims, rng)
    }
}
