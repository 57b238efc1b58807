//! Contact sheets: a query image and its neighbours in one PNG, with ranks and scores.

use std::path::Path;

use ab_glyph::PxScale;
use image::{Rgb, RgbImage, imageops};
use imageproc::drawing::{draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

use crate::charts::{font, save};
use crate::{Image, Result};

const TILE: u32 = 96;
const GAP: u32 = 10;
const LABEL: u32 = 36;
const PER_ROW: u32 = 9;

/// An RGB copy of `image`: gray (with or without alpha) on every channel, colour as it is,
/// alpha dropped.
fn rgb(image: &Image) -> RgbImage {
    let (h, w, c) = image.dim();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let channel = |k: usize| image[[y, x, if c < 3 { 0 } else { k }]];
        Rgb([channel(0), channel(1), channel(2)])
    })
}

/// An RGB copy of `image` scaled to `TILE` pixels on its longer side (nearest neighbour, so
/// small images stay sharp).
fn tile(image: &Image) -> RgbImage {
    let (h, w, _) = image.dim();
    let rgb = rgb(image);
    let scale = f64::from(TILE) / w.max(h) as f64;
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    imageops::resize(&rgb, tw, th, imageops::FilterType::Nearest)
}

/// One picture of a contact sheet and what is written under it.
#[derive(Debug, Clone)]
pub struct Tile {
    /// The picture.
    pub image: Image,
    /// Its similarity to the query (none for the query itself).
    pub score: Option<f64>,
    /// What it is: an id or file name, or a video and time. A caption too long for the
    /// tile keeps its end (`...train:12`), which tells items apart.
    pub caption: String,
}

/// Writes a sheet to `path`: `query` first (framed, labelled "query"), then each neighbour
/// with its rank and score, every tile with its caption beneath, nine tiles to a row.
pub fn contact_sheet(path: &Path, query: &Tile, neighbours: &[Tile]) -> Result<()> {
    let count = neighbours.len() as u32 + 1;
    let columns = count.min(PER_ROW);
    let rows = count.div_ceil(PER_ROW);
    let mut sheet = RgbImage::from_pixel(
        columns * (TILE + GAP) + GAP,
        rows * (TILE + GAP + LABEL) + GAP,
        Rgb([255, 255, 255]),
    );
    let font = font();
    let ink = Rgb([20, 20, 20]);
    let cells = std::iter::once((query, "query".to_owned())).chain(
        neighbours.iter().enumerate().map(|(rank, tile)| {
            let score = tile.score.map_or_else(String::new, |s| format!(" {s:.3}"));
            (tile, format!("#{}{score}", rank + 1))
        }),
    );
    for (i, (cell, heading)) in cells.enumerate() {
        let (col, row) = (i as u32 % PER_ROW, i as u32 / PER_ROW);
        let (x, y) = (GAP + col * (TILE + GAP), GAP + row * (TILE + GAP + LABEL));
        imageops::overlay(&mut sheet, &tile(&cell.image), i64::from(x), i64::from(y));
        if i == 0 {
            let frame = Rect::at(x as i32 - 3, y as i32 - 3).of_size(TILE + 6, TILE + 6);
            draw_hollow_rect_mut(&mut sheet, frame, Rgb([200, 70, 30]));
        }
        if let Some(font) = &font {
            let (heading_scale, caption_scale) = (PxScale::from(14.0), PxScale::from(12.0));
            let top = (y + TILE + 4) as i32;
            draw_text_mut(
                &mut sheet,
                ink,
                x as i32,
                top,
                heading_scale,
                font,
                &heading,
            );
            let caption = fitted(&cell.caption, TILE + GAP - 2, caption_scale, font);
            let grey = Rgb([90, 90, 90]);
            draw_text_mut(
                &mut sheet,
                grey,
                x as i32,
                top + 17,
                caption_scale,
                font,
                &caption,
            );
        }
    }
    save(&sheet, path)
}

/// `text`, or its end behind "..." when it is wider than `width` pixels at `scale`.
fn fitted(text: &str, width: u32, scale: PxScale, font: &impl ab_glyph::Font) -> String {
    if text_size(scale, font, text).0 <= width {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    (1..chars.len())
        .map(|skip| format!("...{}", chars[skip..].iter().collect::<String>()))
        .find(|t| text_size(scale, font, t).0 <= width)
        .unwrap_or_default()
}

/// Writes a grid to `path`: one row per cluster (`rows[c]` its sample images), the row
/// labelled with the cluster's number and size.
pub fn cluster_grid(path: &Path, rows: &[(Vec<Image>, usize)]) -> Result<()> {
    const SMALL: u32 = 56;
    let label_width = 90;
    let columns = rows.iter().map(|(r, _)| r.len() as u32).max().unwrap_or(0);
    let mut grid = RgbImage::from_pixel(
        label_width + columns * (SMALL + 4) + GAP,
        rows.len() as u32 * (SMALL + 4) + 2 * GAP,
        Rgb([255, 255, 255]),
    );
    let font = font();
    for (r, (images, size)) in rows.iter().enumerate() {
        let y = GAP + r as u32 * (SMALL + 4);
        if let Some(font) = &font {
            let text = format!("{r}: {size}");
            draw_text_mut(
                &mut grid,
                Rgb([20, 20, 20]),
                6,
                (y + SMALL / 2 - 8) as i32,
                PxScale::from(14.0),
                font,
                &text,
            );
        }
        for (c, image) in images.iter().enumerate() {
            let small =
                imageops::resize(&tile(image), SMALL, SMALL, imageops::FilterType::Triangle);
            imageops::overlay(
                &mut grid,
                &small,
                i64::from(label_width + c as u32 * (SMALL + 4)),
                i64::from(y),
            );
        }
    }
    save(&grid, path)
}

/// Writes a grid of pictures to `path`, `rows[r]` left to right in row `r` (the view
/// previews: an image, then its views). Every picture is scaled (nearest neighbour) to fill
/// a square cell as wide as the largest picture's longer side and at least 96 pixels, cells
/// 4 pixels apart on white, written as RGB; gray and colour pictures may share a grid.
pub fn view_grid(path: &Path, rows: &[Vec<Image>]) -> Result<()> {
    const VIEW_GAP: u32 = 4;
    let side = |p: &Image| p.dim().0.max(p.dim().1) as u32;
    let cell = rows.iter().flatten().map(side).fold(TILE, u32::max);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let mut grid = RgbImage::from_pixel(
        columns * (cell + VIEW_GAP) + VIEW_GAP,
        rows.len() as u32 * (cell + VIEW_GAP) + VIEW_GAP,
        Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, picture) in row.iter().enumerate() {
            let scaled = imageops::resize(&rgb(picture), cell, cell, imageops::FilterType::Nearest);
            let (x, y) = (
                VIEW_GAP + c as u32 * (cell + VIEW_GAP),
                VIEW_GAP + r as u32 * (cell + VIEW_GAP),
            );
            imageops::overlay(&mut grid, &scaled, i64::from(x), i64::from(y));
        }
    }
    save(&grid, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_holds_the_query_and_every_neighbour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.png");
        let gray = Image::from_elem((28, 28, 1), 40);
        let colour = Image::from_shape_fn((32, 32, 3), |(y, x, c)| (x * 8 + y + c * 50) as u8);
        let neighbours: Vec<Tile> = (0..10)
            .map(|i| Tile {
                image: colour.clone(),
                score: Some(1.0 - 0.01 * f64::from(i)),
                caption: format!("a/long/folder/name/item_{i}.png"),
            })
            .collect();
        let query = Tile {
            image: gray,
            score: None,
            caption: "query.png".into(),
        };
        contact_sheet(&path, &query, &neighbours).unwrap();
        let sheet = image::open(&path).unwrap().to_rgb8();
        // 11 tiles: a full row of 9 and a second row.
        assert_eq!(sheet.width(), 9 * (TILE + GAP) + GAP);
        assert_eq!(sheet.height(), 2 * (TILE + GAP + LABEL) + GAP);
        // The query tile is the gray image, scaled up.
        assert_eq!(sheet.get_pixel(GAP + 10, GAP + 10), &Rgb([40, 40, 40]));
        // Each caption is written in grey under its tile.
        let caption_rows = (GAP + TILE + 21)..(GAP + TILE + LABEL);
        let grey = sheet
            .enumerate_pixels()
            .filter(|(x, y, p)| caption_rows.contains(y) && *x < TILE && p.0[0] < 200)
            .count();
        assert!(grey > 20, "the query's caption is drawn ({grey} pixels)");
    }

    #[test]
    fn a_view_grid_scales_each_picture_into_its_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.png");
        let colour = Image::from_shape_fn((12, 12, 3), |(y, x, c)| (y * 20 + x + c * 7) as u8);
        let gray = Image::from_shape_fn((12, 12, 1), |(y, x, _)| (x * 20 + y) as u8);
        // Two rows, the second one picture short.
        view_grid(
            &path,
            &[vec![colour.clone(), gray.clone()], vec![gray.clone()]],
        )
        .unwrap();
        let grid = image::open(&path).unwrap().to_rgb8();
        let (cell, gap) = (TILE, 4);
        assert_eq!(
            grid.dimensions(),
            (2 * (cell + gap) + gap, 2 * (cell + gap) + gap)
        );
        for (y, x) in [(0, 0), (50, 17), (95, 95)] {
            // 12 pixels scaled 8x: cell pixel (y, x) shows source pixel (y / 8, x / 8).
            let (sy, sx) = ((y * 12 / cell) as usize, (x * 12 / cell) as usize);
            let first = grid.get_pixel(gap + x, gap + y).0;
            assert_eq!(first, [0, 1, 2].map(|c| colour[[sy, sx, c]]));
            let second = grid.get_pixel(2 * gap + cell + x, gap + y).0;
            assert_eq!(second, [gray[[sy, sx, 0]]; 3]);
            let below = grid.get_pixel(gap + x, 2 * gap + cell + y).0;
            assert_eq!(below, [gray[[sy, sx, 0]]; 3]);
        }
        // The missing picture's cell and the gaps stay white.
        assert_eq!(
            grid.get_pixel(2 * gap + cell + 10, 2 * gap + cell + 10).0,
            [255; 3]
        );
        assert_eq!(grid.get_pixel(gap + cell + 1, 50).0, [255; 3]);
    }

    #[test]
    fn a_long_caption_keeps_its_end() {
        let font = font().expect("a font for captions (Debian: fonts-dejavu-core)");
        let scale = PxScale::from(12.0);
        assert_eq!(fitted("a.png", 100, scale, &font), "a.png");
        let long = "fashion-mnist:train:59999";
        let fitted = fitted(long, 80, scale, &font);
        assert!(
            fitted.starts_with("...") && fitted.ends_with(":59999"),
            "{fitted}"
        );
        assert!(text_size(scale, &font, &fitted).0 <= 80);
    }
}
