//! Helpers shared by the workspace end-to-end tests in `tests/tests/`.

use std::path::Path;

mod postgres;
pub use postgres::{LocalPostgres, start_postgres};

use contrastive_tensor::nn;

/// The four shape classes [`write_shapes`] draws.
pub const SHAPES: [&str; 4] = ["horizontal", "vertical", "diagonal", "ring"];

/// Writes `per_class` grayscale PNG images of `size` x `size` pixels for each of four
/// shapes (a horizontal bar, a vertical bar, a diagonal, a ring) into `root/<shape>/`, each
/// at a random place over noise. The same `seed` gives the same files.
pub fn write_shapes(root: &Path, per_class: usize, size: u32, seed: u64) {
    let mut state = seed
        .wrapping_mul(2_862_933_555_777_941_757)
        .wrapping_add(12345);
    let mut next = move |m: u32| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 33) as u32) % m
    };
    let margin = size / 4;
    for (class, name) in SHAPES.iter().enumerate() {
        std::fs::create_dir_all(root.join(name)).expect("the folder can be created");
        for i in 0..per_class {
            let cx = (margin + next(size - 2 * margin)) as i32;
            let cy = (margin + next(size - 2 * margin)) as i32;
            let img = image::GrayImage::from_fn(size, size, |x, y| {
                let (dx, dy) = (x as i32 - cx, y as i32 - cy);
                let on = match class {
                    0 => dy.abs() <= 1 && dx.abs() <= 7,
                    1 => dx.abs() <= 1 && dy.abs() <= 7,
                    2 => (dx - dy).abs() <= 1 && dx.abs() <= 6,
                    _ => (dx * dx + dy * dy - 30).abs() <= 8,
                };
                image::Luma([if on { 220 } else { next(70) as u8 }])
            });
            img.save(root.join(name).join(format!("{i}.png")))
                .expect("the image can be written");
        }
    }
}

/// Writes a class folder `root/<class>` of eight images as users have them, each of its own
/// size: 8-bit gray, RGB, RGBA, 16-bit gray, 16-bit RGB, a palette PNG, a JPEG whose EXIF
/// tag says to turn it a quarter turn clockwise, and a BMP. `shift` changes the pixels, so
/// two classes differ.
pub fn write_mixed_images(root: &Path, class: &str, shift: u32) {
    let dir = root.join(class);
    std::fs::create_dir_all(&dir).expect("the folder can be created");
    let value = move |x: u32, y: u32| ((x * 7 + y * 13 + shift * 50) % 256) as u8;
    for i in 0..8u32 {
        let (w, h) = (20 + 3 * i, 18 + 2 * i);
        let path = dir.join(format!("{i}.png"));
        let saved = match i {
            0 => image::GrayImage::from_fn(w, h, |x, y| image::Luma([value(x, y)])).save(&path),
            1 => image::RgbImage::from_fn(w, h, |x, y| image::Rgb([value(x, y), 9, value(y, x)]))
                .save(&path),
            2 => image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([value(x, y), 3, 7, 200]))
                .save(&path),
            3 => image::ImageBuffer::<image::Luma<u16>, _>::from_fn(w, h, |x, y| {
                image::Luma([u16::from(value(x, y)) * 257])
            })
            .save(&path),
            4 => image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(w, h, |x, y| {
                image::Rgb([u16::from(value(x, y)) * 257, 0, 65535])
            })
            .save(&path),
            5 => {
                let indices: Vec<u8> = (0..w * h).map(|p| value(p % w, p / w) % 4).collect();
                write_palette_png(&path, w, h, &indices);
                Ok(())
            }
            6 => {
                let picture = image::RgbImage::from_fn(w, h, |x, y| {
                    image::Rgb([value(x, y), value(y, x), 128])
                });
                write_exif_rotated_jpeg(&dir.join(format!("{i}.jpg")), &picture);
                Ok(())
            }
            _ => image::GrayImage::from_fn(w, h, |x, y| image::Luma([value(y, x)]))
                .save(dir.join(format!("{i}.bmp"))),
        };
        saved.expect("the image can be written");
    }
}

/// Writes an indexed-colour PNG of four colours (black, red, green, white); `indices` holds
/// one palette index per pixel, row by row.
pub fn write_palette_png(path: &Path, width: u32, height: u32, indices: &[u8]) {
    let file = std::fs::File::create(path).expect("the file can be created");
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(vec![0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255]);
    let mut writer = encoder.write_header().expect("the header is written");
    writer
        .write_image_data(indices)
        .expect("the pixels are written");
}

/// Writes `picture` as a JPEG carrying an EXIF orientation of 6 ("the stored picture must
/// be turned 90 degrees clockwise to be upright"), as phone cameras store portrait photos.
pub fn write_exif_rotated_jpeg(path: &Path, picture: &image::RgbImage) {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(picture)
        .expect("the picture encodes");
    // An APP1 segment: "Exif\0\0", then a big-endian TIFF header and one IFD entry
    // (tag 0x0112 Orientation, type SHORT, count 1, value 6).
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, 0x06, 0, 0]);
    exif.extend_from_slice(&[0, 0, 0, 0]);
    let length = u16::try_from(exif.len() + 2).expect("the segment is short");
    let mut file = jpeg[..2].to_vec();
    file.extend_from_slice(&[0xFF, 0xE1]);
    file.extend_from_slice(&length.to_be_bytes());
    file.extend_from_slice(&exif);
    file.extend_from_slice(&jpeg[2..]);
    std::fs::write(path, file).expect("the file can be written");
}

/// A tiny CNN for 1-channel images: two 3x3 conv + batch-norm + ReLU blocks (16 and 32
/// channels, no bias) with a 2x2 max-pool between, global average pooling, and a linear layer
/// to `outputs`.
pub fn tiny_cnn(vs: &nn::VarStore, outputs: i64) -> nn::SequentialT {
    let p = vs.root();
    let conv = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(&p / "conv1", 1, 16, 3, conv))
        .add(nn::batch_norm2d(&p / "bn1", 16, Default::default()))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add(nn::conv2d(&p / "conv2", 16, 32, 3, conv))
        .add(nn::batch_norm2d(&p / "bn2", 32, Default::default()))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 32, outputs, Default::default()))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the test's rendezvous store).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Waits for every child, killing all of them once `watchdog` has passed (a hung worker
/// must not hang the test); each one's exit code, stdout and stderr when every child
/// exited 0, else all of them as the error.
pub fn finish(
    children: Vec<std::process::Child>,
    watchdog: std::time::Duration,
) -> Result<Vec<String>, String> {
    let started = std::time::Instant::now();
    let mut children: Vec<(std::process::Child, Option<std::process::ExitStatus>)> =
        children.into_iter().map(|c| (c, None)).collect();
    while children.iter().any(|(_, status)| status.is_none()) {
        if started.elapsed() > watchdog {
            for (child, _) in &mut children {
                let _ = child.kill();
            }
            return Err(format!("killed after {watchdog:?}: a worker hung"));
        }
        for (child, status) in &mut children {
            if status.is_none() {
                *status = child.try_wait().map_err(|e| e.to_string())?;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut outputs = Vec::new();
    let mut ok = true;
    for (child, status) in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        ok &= status.is_some_and(|s| s.success());
        outputs.push(format!(
            "exit {:?}\n{}{}",
            status.and_then(|s| s.code()),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if ok {
        Ok(outputs)
    } else {
        Err(outputs.join("\n---\n"))
    }
}
