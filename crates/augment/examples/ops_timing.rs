//! Per-operation timing on one 256x256 RGB image (release build), to see where a 224-pixel
//! SimCLR view spends its time: `cargo run --release -p contrastive-augment --example ops_timing`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use contrastive_augment::{
    Image, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, gaussian_blur,
    resize, resized_crop, to_grayscale,
};

fn time(name: &str, runs: usize, mut f: impl FnMut() -> Image) {
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(f());
    }
    println!(
        "{name:>24}: {:8.3} ms",
        start.elapsed().as_secs_f64() * 1e3 / runs as f64
    );
}

fn main() {
    let source = Image::from_shape_fn((256, 256, 3), |(y, x, c)| {
        ((y * 31 + x * 17 + c * 71) % 256) as u8
    });
    let view = resize(&source, 224, 224).unwrap();
    time("resized_crop 180->224", 50, || {
        resized_crop(&source, (10, 20, 180, 170), (224, 224)).unwrap()
    });
    time("resize 256->224", 50, || resize(&source, 224, 224).unwrap());
    time("brightness", 50, || adjust_brightness(&view, 1.3).unwrap());
    time("contrast", 50, || adjust_contrast(&view, 0.7).unwrap());
    time("saturation", 50, || adjust_saturation(&view, 1.4).unwrap());
    time("hue", 50, || adjust_hue(&view, 0.1).unwrap());
    time("grayscale", 50, || to_grayscale(&view, 3).unwrap());
    time("blur k=23", 50, || gaussian_blur(&view, 23, 1.5).unwrap());
}
