//! Pictures as users have them read as they are shown: EXIF orientation applied, palette
//! and 16-bit files decoded, every kind brought to the channels asked for.

use contrastive_data::{Channels, Dataset, FolderOptions, ImageFolder, Resize, read_image};
use contrastive_e2e::{write_exif_rotated_jpeg, write_mixed_images, write_palette_png};

#[test]
fn an_exif_rotated_photo_is_read_upright() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portrait.jpg");
    // Stored 40 wide and 24 high, its left half white: turned a quarter clockwise, it is
    // 24 wide and 40 high with the white half on top.
    let stored = image::RgbImage::from_fn(40, 24, |x, _| {
        image::Rgb(if x < 20 { [255; 3] } else { [0; 3] })
    });
    write_exif_rotated_jpeg(&path, &stored);
    let upright = read_image(&path).unwrap().to_rgb8();
    assert_eq!(upright.dimensions(), (24, 40));
    assert!(
        upright.get_pixel(12, 5).0[0] > 200,
        "{:?}",
        upright.get_pixel(12, 5)
    );
    assert!(
        upright.get_pixel(12, 34).0[0] < 50,
        "{:?}",
        upright.get_pixel(12, 34)
    );
}

#[test]
fn a_palette_png_reads_as_its_colours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palette.png");
    // Indices 0..4 are black, red, green, white.
    write_palette_png(&path, 4, 1, &[0, 1, 2, 3]);
    let colours = read_image(&path).unwrap().to_rgb8();
    let pixels: Vec<[u8; 3]> = colours.pixels().map(|p| p.0).collect();
    assert_eq!(
        pixels,
        [[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 255, 255]]
    );
}

#[test]
fn a_mixed_folder_gives_every_image_the_channels_and_size_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    write_mixed_images(dir.path(), "a", 0);
    for (channels, c) in [(Channels::Gray, 1), (Channels::Rgb, 3)] {
        let options = FolderOptions {
            channels,
            resize: Resize::ShorterSideThenCenterCrop { size: 16 },
            strict: true,
            ..Default::default()
        };
        let folder = ImageFolder::open(dir.path(), options).unwrap();
        assert_eq!(folder.len(), 8, "{}", folder.summary());
        for i in 0..folder.len() {
            let sample = folder.get(i).unwrap();
            assert_eq!(sample.image.dim(), (16, 16, c), "{:?}", folder.path(i));
        }
    }
}
