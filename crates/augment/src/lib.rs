//! `contrastive-augment`: the image operations that make positive pairs.
//!
//! - Deterministic operations, each computed as torchvision's v2 functional kernel computes it
//!   on `uint8` images and checked against it: colour ([`adjust_brightness`],
//!   [`adjust_contrast`], [`adjust_saturation`], [`adjust_hue`], [`to_grayscale`],
//!   [`solarize`]), geometry ([`hflip`], [`vflip`], [`crop`], [`center_crop`], [`resize`],
//!   [`resized_crop`], bilinear or bicubic ([`resize_with`]), [`rotate`], [`affine`]) and
//!   [`gaussian_blur`].
//! - Random [`Transform`]s that draw their parameters as torchvision does
//!   ([`RandomResizedCrop`], [`RandomHorizontalFlip`], [`ColorJitter`], [`RandomGrayscale`],
//!   [`GaussianBlur`], [`RandomSolarize`], [`RandomRotation`], [`RandomAffine`]), composed with [`Compose`], [`RandomApply`] and
//!   [`OneOf`]; bad parameters are errors when a transform is built.
//! - Presets: [`presets::ViewRecipe`] holds every parameter of a view (crop scale, rotation,
//!   flip, colour jitter, grayscale, blur, solarization) and builds it; SimCLR's, MoCo v2's,
//!   BYOL's (two asymmetric views), SwAV's multi-crop ([`presets::multi_crop`]) and W1's are
//!   ready made, [`presets::named`] finds them by name.
//! - [`MultiViewPipeline`]: K views of a batch in parallel, the same for a seed whatever the
//!   thread count; `to_batch` (feature `tensor`, on by default) makes them a `u8` or
//!   normalised float tensor, NCHW or channels-last; [`Prefetcher`] prepares the next batches
//!   while the model trains.
//!
//! - [`view_rows`]: images beside their views, for a picture of what a recipe does
//!   (`contrastive_draw::view_grid` draws it).
//! - Plans: a transform draws its parameters into deterministic [`Step`]s
//!   ([`Transform::plan`]); `apply_plans` (feature `tensor`) runs the plans of a whole batch as
//!   tensor operations on its device (a GPU where there is one), giving the CPU's views.
//!
//! Warps sample nearest (torchvision's default) or bilinear ([`Sampling`]). The pixel loops are vectorised (and compiled for AVX2 too, chosen at run time) without
//! changing a single output value.
//!
//! ```
//! use contrastive_augment::{adjust_brightness, hflip, resized_crop};
//! let image = ndarray::Array3::<u8>::from_shape_fn((32, 32, 3), |(y, x, c)| (y * 8 + x + c) as u8);
//! let crop = resized_crop(&image, (4, 4, 20, 20), (28, 28))?;
//! assert_eq!(crop.dim(), (28, 28, 3));
//! assert_eq!(hflip(&hflip(&image)), image);
//! assert_eq!(adjust_brightness(&image, 1.0)?, image);
//! # Ok::<(), contrastive_augment::Error>(())
//! ```

mod batch;
#[cfg(feature = "tensor")]
mod batched;
mod blur;
mod color;
mod error;
mod float;
mod geometry;
mod pipeline;
pub mod presets;
mod preview;
mod simd;
mod steps;
mod transforms;

pub use crate::batch::Prefetcher;
#[cfg(feature = "tensor")]
pub use crate::batch::{BatchFormat, format_batch, to_batch};
#[cfg(feature = "tensor")]
pub use crate::batched::apply_plans;
pub use crate::blur::{gaussian_blur, gaussian_kernel};
pub use crate::color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, solarize, to_grayscale,
};
pub use crate::error::{Error, Result};
pub use crate::geometry::{
    Interpolation, Sampling, affine, affine_with, center_crop, crop, hflip, resize, resize_with,
    resized_crop, resized_crop_with, rotate, rotate_with, vflip,
};
pub use crate::pipeline::MultiViewPipeline;
pub use crate::preview::view_rows;
pub use crate::steps::{Dims, Step, apply_plan};
pub use crate::transforms::{
    ColorJitter, Compose, GaussianBlur, OneOf, RandomAffine, RandomApply, RandomGrayscale,
    RandomHorizontalFlip, RandomResizedCrop, RandomRotation, RandomSolarize, Transform,
};

/// An image: `u8` values, shape `[height, width, channels]` (as `contrastive-data` gives).
pub type Image = ndarray::Array3<u8>;
