//! Bridges between the `image` crate and our `[H, W, C]` arrays, and the channel and size
//! policies readers apply to pictures of any kind and size.

use std::path::Path;

use image::imageops::FilterType;
use image::{
    DynamicImage, GrayAlphaImage, GrayImage, ImageDecoder, ImageReader, RgbImage, RgbaImage,
};
use ndarray::{Array3, ArrayView3};

use crate::{Error, Image, Result};

/// Reads a picture file of any format the `image` crate decodes (told by its bytes, not its
/// name) and turns it upright as its EXIF orientation tag says (cameras store portrait
/// photos sideways with a tag), as browsers and photo viewers show it.
///
/// ```no_run
/// let photo = contrastive_data::read_image("photos/cat.jpg".as_ref())?;
/// println!("{} x {}", photo.width(), photo.height());
/// # Ok::<(), contrastive_data::Error>(())
/// ```
pub fn read_image(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    upright(reader, path)
}

/// Decodes a picture held in memory (an upload) as [`read_image`] reads a file, refusing
/// before decoding one whose header declares a side above `max_side` pixels (a small file
/// can declare 20 000 x 20 000); `name` is what errors call it.
///
/// ```
/// let err = contrastive_data::decode_image(b"not a picture", 4096, "upload".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("upload"));
/// ```
pub fn decode_image(bytes: &[u8], max_side: u32, name: &Path) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    reader.limits(limits);
    upright(reader, name)
}

/// Decodes what `reader` holds and applies its EXIF orientation.
fn upright<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    path: &Path,
) -> Result<DynamicImage> {
    let decode_error = |e: image::ImageError| Error::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Converts a picture into a `u8` array `[H, W, C]`, keeping its channels (gray 1,
/// gray+alpha 2, RGB 3, RGBA 4); 16-bit and float pictures are reduced to 8 bits.
pub fn hwc_from_image(image: &DynamicImage) -> Image {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (channels, bytes) = match image {
        DynamicImage::ImageLuma8(img) => (1, img.as_raw().clone()),
        DynamicImage::ImageLumaA8(img) => (2, img.as_raw().clone()),
        DynamicImage::ImageRgb8(img) => (3, img.as_raw().clone()),
        DynamicImage::ImageRgba8(img) => (4, img.as_raw().clone()),
        DynamicImage::ImageLuma16(_) => (1, image.to_luma8().into_raw()),
        DynamicImage::ImageLumaA16(_) => (2, image.to_luma_alpha8().into_raw()),
        other if other.color().has_alpha() => (4, other.to_rgba8().into_raw()),
        other => (3, other.to_rgb8().into_raw()),
    };
    Array3::from_shape_vec((h, w, channels), bytes).expect("buffer matches the picture's size")
}

/// The hex SHA-256 of an image's shape and pixels: the identity of its content, the same for
/// two copies of a file or for the same pixels saved in another format, whatever their
/// names (collections skip an image whose content they hold).
///
/// ```
/// let a = ndarray::Array3::<u8>::zeros((2, 2, 1));
/// assert_eq!(contrastive_data::pixel_hash(&a), contrastive_data::pixel_hash(&a.clone()));
/// assert_ne!(contrastive_data::pixel_hash(&a), contrastive_data::pixel_hash(&(a + 1)));
/// ```
pub fn pixel_hash(image: &Image) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for side in image.shape() {
        hasher.update((*side as u64).to_le_bytes());
    }
    match image.as_slice() {
        Some(pixels) => hasher.update(pixels),
        None => hasher.update(image.iter().copied().collect::<Vec<u8>>()),
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Converts a `u8` array `[H, W, C]` (C in 1..=4) into a picture.
pub fn image_from_hwc(array: ArrayView3<'_, u8>) -> Result<DynamicImage> {
    let (h, w, c) = array.dim();
    let bytes: Vec<u8> = array.iter().copied().collect();
    let (w, h) = (w as u32, h as u32);
    let image = match c {
        1 => GrayImage::from_raw(w, h, bytes).map(DynamicImage::ImageLuma8),
        2 => GrayAlphaImage::from_raw(w, h, bytes).map(DynamicImage::ImageLumaA8),
        3 => RgbImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgb8),
        4 => RgbaImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgba8),
        _ => None,
    };
    image.ok_or_else(|| Error::InvalidOption(format!("an image needs 1 to 4 channels, not {c}")))
}

/// The channel count images are brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    /// As stored (1 to 4).
    #[default]
    Keep,
    /// 1 channel (luma, ITU-R BT.601 weights as the `image` crate computes them).
    Gray,
    /// 3 channels (gray replicated; alpha dropped).
    Rgb,
    /// 4 channels (opaque alpha added where missing).
    Rgba,
}

/// The size images are brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// As stored.
    #[default]
    Keep,
    /// Exactly `height` x `width` (bilinear; the aspect ratio may change).
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
    /// Shorter side scaled to `size` (bilinear), then the centre `size` x `size` square, as
    /// torchvision's `Resize(size)` + `CenterCrop(size)`.
    ShorterSideThenCenterCrop {
        /// Output side.
        size: u32,
    },
}

impl Resize {
    pub(crate) fn validate(self) -> Result<Self> {
        match self {
            Resize::Exact { height: 0, .. } | Resize::Exact { width: 0, .. } => Err(
                Error::InvalidOption("Resize::Exact needs a non-zero height and width".into()),
            ),
            Resize::ShorterSideThenCenterCrop { size: 0 } => Err(Error::InvalidOption(
                "Resize::ShorterSideThenCenterCrop needs a non-zero size".into(),
            )),
            ok => Ok(ok),
        }
    }
}

/// Applies the channel and size policies to a decoded picture.
pub fn conform(image: DynamicImage, channels: Channels, resize: Resize) -> Image {
    let image = match resize {
        Resize::Keep => image,
        Resize::Exact { height, width } => {
            if (image.width(), image.height()) == (width, height) {
                image
            } else {
                image.resize_exact(width, height, FilterType::Triangle)
            }
        }
        Resize::ShorterSideThenCenterCrop { size } => {
            let (w, h) = (image.width(), image.height());
            let scale = f64::from(size) / f64::from(w.min(h));
            let (nw, nh) = (
                ((f64::from(w) * scale).round() as u32).max(size),
                ((f64::from(h) * scale).round() as u32).max(size),
            );
            let scaled = if (nw, nh) == (w, h) {
                image
            } else {
                image.resize_exact(nw, nh, FilterType::Triangle)
            };
            scaled.crop_imm((nw - size) / 2, (nh - size) / 2, size, size)
        }
    };
    let image = match channels {
        Channels::Keep => image,
        Channels::Gray => DynamicImage::ImageLuma8(image.to_luma8()),
        Channels::Rgb => DynamicImage::ImageRgb8(image.to_rgb8()),
        Channels::Rgba => DynamicImage::ImageRgba8(image.to_rgba8()),
    };
    hwc_from_image(&image)
}
