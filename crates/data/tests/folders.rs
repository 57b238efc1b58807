//! Image folders: classes or flat, every common format, channel and size policies, and
//! unreadable files skipped (or fatal in strict mode).

use std::fs;
use std::path::Path;

use contrastive_data::{
    Channels, Dataset, Error, FolderOptions, ImageFolder, Layout, Resize, Source, hwc_from_image,
    image_from_hwc,
};
use image::{DynamicImage, ImageFormat, Luma, Rgb, Rgba};
use ndarray::Array3;

fn save(img: &DynamicImage, path: &Path, format: ImageFormat) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, format).unwrap();
}

fn gray(w: u32, h: u32, v: u8) -> DynamicImage {
    DynamicImage::ImageLuma8(image::ImageBuffer::from_fn(w, h, |x, y| {
        Luma([v.wrapping_add((x + y) as u8)])
    }))
}

fn rgb(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([x as u8 * 10, y as u8 * 10, 200])
    }))
}

fn rgba(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(image::ImageBuffer::from_fn(w, h, |x, _| {
        Rgba([x as u8, 0, 50, 128])
    }))
}

/// cats/ (png, jpeg, bmp of several sizes and kinds), dogs/ (gif, tiff, webp in a nested
/// folder), plus a text file and a hidden file that must be ignored.
fn write_classes(root: &Path) {
    save(&gray(10, 8, 0), &root.join("cats/a.png"), ImageFormat::Png);
    save(&rgb(20, 12), &root.join("cats/b.jpg"), ImageFormat::Jpeg);
    save(&rgba(6, 6), &root.join("cats/c.bmp"), ImageFormat::Bmp);
    save(&rgb(9, 9), &root.join("dogs/d.gif"), ImageFormat::Gif);
    save(
        &gray(5, 7, 30),
        &root.join("dogs/deep/e.tiff"),
        ImageFormat::Tiff,
    );
    save(&rgb(8, 4), &root.join("dogs/f.webp"), ImageFormat::WebP);
    fs::write(root.join("dogs/notes.txt"), "not an image").unwrap();
    save(&rgb(3, 3), &root.join("dogs/.hidden.png"), ImageFormat::Png);
}

#[test]
fn class_subfolders_become_labels_and_every_format_decodes() {
    let dir = tempfile::tempdir().unwrap();
    write_classes(dir.path());
    let folder = ImageFolder::open(dir.path(), FolderOptions::default()).unwrap();
    assert_eq!(folder.class_names(), ["cats", "dogs"]);
    assert_eq!(folder.len(), 6);
    assert!(folder.skipped().is_empty());
    let labels: Vec<_> = (0..6)
        .map(|i| folder.get(i).unwrap().label.unwrap())
        .collect();
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
    // Channels are kept as stored: gray 1, RGB 3, RGBA 4; sizes too.
    assert_eq!(folder.get(0).unwrap().image.dim(), (8, 10, 1));
    assert_eq!(folder.get(1).unwrap().image.dim(), (12, 20, 3));
    assert_eq!(folder.get(2).unwrap().image.dim(), (6, 6, 4));
    let png = folder.get(0).unwrap();
    assert_eq!(
        png.image,
        hwc_from_image(&gray(10, 8, 0)),
        "PNG decodes losslessly"
    );
    assert!(matches!(&png.source, Source::File(p) if p.ends_with("cats/a.png")));
    assert!(folder.summary().contains("6 images, 2 classes, 0 skipped"));
}

#[test]
fn channel_and_size_policies_apply_to_every_image() {
    let dir = tempfile::tempdir().unwrap();
    write_classes(dir.path());
    let options = FolderOptions {
        channels: Channels::Rgb,
        resize: Resize::Exact {
            height: 16,
            width: 24,
        },
        ..Default::default()
    };
    let folder = ImageFolder::open(dir.path(), options).unwrap();
    for sample in folder
        .get_many(&(0..folder.len()).collect::<Vec<_>>())
        .unwrap()
    {
        assert_eq!(sample.image.dim(), (16, 24, 3));
    }
    let gray_square = FolderOptions {
        channels: Channels::Gray,
        resize: Resize::ShorterSideThenCenterCrop { size: 4 },
        ..Default::default()
    };
    let folder = ImageFolder::open(dir.path(), gray_square).unwrap();
    assert!((0..folder.len()).all(|i| folder.get(i).unwrap().image.dim() == (4, 4, 1)));
    // A gray picture brought to RGB repeats its value in the three channels.
    let rgba = ImageFolder::open(
        dir.path(),
        FolderOptions {
            channels: Channels::Rgba,
            ..Default::default()
        },
    )
    .unwrap();
    let first = rgba.get(0).unwrap().image;
    assert_eq!(
        (first[[1, 2, 0]], first[[1, 2, 2]], first[[1, 2, 3]]),
        (3, 3, 255)
    );
    assert!(
        ImageFolder::open(
            dir.path(),
            FolderOptions {
                resize: Resize::Exact {
                    height: 0,
                    width: 3
                },
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[test]
fn a_flat_folder_is_unlabeled() {
    let dir = tempfile::tempdir().unwrap();
    save(&rgb(4, 4), &dir.path().join("x10.png"), ImageFormat::Png);
    save(&rgb(4, 4), &dir.path().join("x9.png"), ImageFormat::Png);
    save(
        &rgb(4, 4),
        &dir.path().join("more/x1.png"),
        ImageFormat::Png,
    );
    let folder = ImageFolder::open(
        dir.path(),
        FolderOptions {
            layout: Layout::Flat,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(folder.class_names().is_empty());
    assert_eq!(folder.len(), 3);
    assert_eq!(folder.get(0).unwrap().label, None);
    // Natural order: more/x1, x9, x10.
    let names: Vec<_> = (0..3)
        .map(|i| folder.path(i).unwrap().file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["x1.png", "x9.png", "x10.png"]);
}

#[test]
fn undecodable_images_are_skipped_and_counted_or_fatal_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    write_classes(dir.path());
    fs::write(
        dir.path().join("cats/broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    fs::write(dir.path().join("dogs/empty.jpg"), b"").unwrap();
    let folder = ImageFolder::open(dir.path(), FolderOptions::default()).unwrap();
    assert_eq!(folder.len(), 6);
    let skipped: Vec<_> = folder
        .skipped()
        .iter()
        .map(|s| s.path.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(skipped, ["broken.png", "empty.jpg"]);
    assert!(folder.summary().contains("2 skipped"));

    let err = ImageFolder::open(
        dir.path(),
        FolderOptions {
            strict: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path.ends_with("cats/broken.png")),
        "{err}"
    );
}

#[test]
fn a_folder_without_images_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = ImageFolder::open(dir.path(), FolderOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Empty { what: "images", .. }), "{err}");
    fs::write(dir.path().join("readme.txt"), "no pictures here").unwrap();
    assert!(matches!(
        ImageFolder::open(dir.path(), FolderOptions::default()),
        Err(Error::Empty { .. })
    ));
    let missing =
        ImageFolder::open(dir.path().join("absent"), FolderOptions::default()).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
}

#[test]
fn arrays_and_pictures_convert_both_ways() {
    for channels in [1usize, 2, 3, 4] {
        let array = Array3::from_shape_fn((5, 7, channels), |(y, x, c)| (y * 40 + x * 5 + c) as u8);
        let picture = image_from_hwc(array.view()).unwrap();
        assert_eq!(hwc_from_image(&picture), array, "{channels} channels");
    }
    assert!(image_from_hwc(Array3::<u8>::zeros((2, 2, 6)).view()).is_err());
    let deep = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(2, 2, Luma([65535u16])));
    assert_eq!(hwc_from_image(&deep), Array3::from_elem((2, 2, 1), 255u8));
}
