//! A random transform's drawn parameters as a list of deterministic [`Step`]s: the same plan
//! runs image by image on the CPU ([`Step::apply`]) or for a whole batch on a tensor device
//! (`apply_plans`, feature `tensor`), so both paths make views with the same parameters.

use crate::{
    Image, Interpolation, Result, Sampling, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation, affine_with, gaussian_blur, hflip, resized_crop_with, rotate_with, solarize,
    to_grayscale, vflip,
};

/// An image's `(height, width, channels)`.
pub type Dims = (usize, usize, usize);

/// One deterministic operation with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// [`resized_crop_with`]: the window `(top, left, height, width)` resized to `size`
    /// `(height, width)`.
    ResizedCrop {
        /// `(top, left, height, width)` of the crop.
        window: (usize, usize, usize, usize),
        /// Output `(height, width)`.
        size: (usize, usize),
        /// Resampling filter.
        interpolation: Interpolation,
    },
    /// [`hflip`].
    HorizontalFlip,
    /// [`vflip`].
    VerticalFlip,
    /// [`adjust_brightness`] by the factor.
    Brightness(f32),
    /// [`adjust_contrast`] by the factor.
    Contrast(f32),
    /// [`adjust_saturation`] by the factor.
    Saturation(f32),
    /// [`adjust_hue`] by the shift (turns).
    Hue(f32),
    /// [`to_grayscale`], keeping the channel count.
    Grayscale,
    /// [`gaussian_blur`].
    Blur {
        /// Odd kernel size.
        kernel_size: usize,
        /// Standard deviation in pixels.
        sigma: f32,
    },
    /// [`solarize`] at the threshold.
    Solarize(u8),
    /// [`rotate_with`] by `angle` degrees, counter-clockwise.
    Rotate {
        /// Degrees.
        angle: f64,
        /// Values of uncovered pixels.
        fill: Vec<u8>,
        /// How the source is read between pixels.
        sampling: Sampling,
    },
    /// [`affine_with`].
    Affine {
        /// Rotation in degrees.
        angle: f64,
        /// Translation in pixels `(x, y)`.
        translate: (f64, f64),
        /// Scale factor.
        scale: f64,
        /// Shear `(x, y)` in degrees.
        shear: (f64, f64),
        /// Values of uncovered pixels.
        fill: Vec<u8>,
        /// How the source is read between pixels.
        sampling: Sampling,
    },
}

impl Step {
    /// Runs the step on one image.
    pub fn apply(&self, image: &Image) -> Result<Image> {
        match self {
            Step::ResizedCrop {
                window,
                size,
                interpolation,
            } => resized_crop_with(image, *window, *size, *interpolation),
            Step::HorizontalFlip => Ok(hflip(image)),
            Step::VerticalFlip => Ok(vflip(image)),
            Step::Brightness(f) => adjust_brightness(image, *f),
            Step::Contrast(f) => adjust_contrast(image, *f),
            Step::Saturation(f) => adjust_saturation(image, *f),
            Step::Hue(shift) => adjust_hue(image, *shift),
            Step::Grayscale => to_grayscale(image, image.dim().2),
            Step::Blur { kernel_size, sigma } => gaussian_blur(image, *kernel_size, *sigma),
            Step::Solarize(threshold) => solarize(image, *threshold),
            Step::Rotate {
                angle,
                fill,
                sampling,
            } => rotate_with(image, *angle, fill, *sampling),
            Step::Affine {
                angle,
                translate,
                scale,
                shear,
                fill,
                sampling,
            } => affine_with(image, *angle, *translate, *scale, *shear, fill, *sampling),
        }
    }

    /// The dimensions of the step's output for an input of `dims`.
    pub fn output_dims(&self, (h, w, c): Dims) -> Dims {
        match self {
            Step::ResizedCrop { size, .. } => (size.0, size.1, c),
            _ => (h, w, c),
        }
    }
}

/// Runs `plan` on one image, step by step (a copy of the image for an empty plan).
pub fn apply_plan(image: &Image, plan: &[Step]) -> Result<Image> {
    let Some((first, rest)) = plan.split_first() else {
        return Ok(image.clone());
    };
    rest.iter()
        .try_fold(first.apply(image)?, |img, step| step.apply(&img))
}
