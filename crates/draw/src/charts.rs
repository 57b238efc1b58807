//! PNG charts: line charts (a run's curves), scatter maps with a legend, and bar charts of
//! factors either side of 1.

use std::path::Path;

use ab_glyph::{FontVec, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_line_segment_mut, draw_text_mut, text_size};

use crate::{Error, Result};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub label: String,
    /// Its colour.
    pub color: [u8; 3],
    /// `(x, y)` points in order of x.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
/// The size of a line chart, `(width, height)` in pixels.
pub const CHART_SIZE: (u32, u32) = (WIDTH, HEIGHT);
const LEFT: f32 = 70.0;
const RIGHT: f32 = 20.0;
const TOP: f32 = 40.0;
const BOTTOM: f32 = 50.0;

/// Fonts looked for, in order (`$CONTRASTIVE_FONT` first). Without any, charts are drawn
/// without text.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The first font found: `$CONTRASTIVE_FONT`, then common system fonts.
pub(crate) fn font() -> Option<FontVec> {
    let from_env = std::env::var_os("CONTRASTIVE_FONT").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(FONT_PATHS.iter().map(std::path::PathBuf::from))
        .find_map(|p| FontVec::try_from_vec(std::fs::read(p).ok()?).ok())
}

/// About five round tick values covering `[low, high]`, and the decimals that tell them
/// apart (as many as their step needs, so neighbouring labels never read the same).
fn ticks(low: f64, high: f64) -> (Vec<f64>, usize) {
    let span = (high - low).max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() * step;
    let values = (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= high + step * 1e-9)
        .collect();
    let decimals = (0..12)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12);
    (values, decimals as usize)
}

/// A tick label with `decimals` digits after the point (none from 1000 up).
fn label(value: f64, decimals: usize) -> String {
    let decimals = if value.abs() >= 1000.0 { 0 } else { decimals };
    // `-0` reads as a mistake on an axis.
    let value = if value.abs() < 1e-12 { 0.0 } else { value };
    format!("{value:.decimals$}")
}

/// `[low, high]` widened so that a single value (one point, or a flat line) sits in the
/// middle of a readable range instead of on the edge of a vanishing one.
fn widen(low: f64, high: f64, pad: f64) -> (f64, f64) {
    if high - low < 1e-9 * low.abs().max(1.0) {
        let half = pad * low.abs().max(1.0);
        (low - half, high + half)
    } else {
        let margin = (high - low) * 0.05;
        (low - margin, high + margin)
    }
}

/// Draws `series` into a PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        // One epoch, say: the point in the middle of one unit either side.
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    (y0, y1) = widen(y0, y1, 0.05);
    let (w, h) = (WIDTH as f32 - LEFT - RIGHT, HEIGHT as f32 - TOP - BOTTOM);
    let px = |x: f64| LEFT + ((x - x0) / (x1 - x0)) as f32 * w;
    let py = |y: f64| TOP + h - ((y - y0) / (y1 - y0)) as f32 * h;
    let font = font();
    let (grid, axis, ink) = (Rgb([225, 225, 225]), Rgb([60, 60, 60]), Rgb([20, 20, 20]));
    let small = PxScale::from(14.0);

    let (y_ticks, y_decimals) = ticks(y0, y1);
    for y in y_ticks {
        draw_line_segment_mut(&mut canvas, (LEFT, py(y)), (LEFT + w, py(y)), grid);
        if let Some(font) = &font {
            let text = label(y, y_decimals);
            let (tw, th) = text_size(small, font, &text);
            draw_text_mut(
                &mut canvas,
                ink,
                (LEFT as i32) - tw as i32 - 6,
                py(y) as i32 - th as i32 / 2,
                small,
                font,
                &text,
            );
        }
    }
    let (x_ticks, x_decimals) = ticks(x0, x1);
    for x in x_ticks {
        draw_line_segment_mut(&mut canvas, (px(x), TOP), (px(x), TOP + h), grid);
        if let Some(font) = &font {
            let text = label(x, x_decimals);
            let (tw, _) = text_size(small, font, &text);
            draw_text_mut(
                &mut canvas,
                ink,
                px(x) as i32 - tw as i32 / 2,
                (TOP + h) as i32 + 6,
                small,
                font,
                &text,
            );
        }
    }
    draw_line_segment_mut(&mut canvas, (LEFT, TOP + h), (LEFT + w, TOP + h), axis);
    draw_line_segment_mut(&mut canvas, (LEFT, TOP), (LEFT, TOP + h), axis);

    for s in series {
        let color = Rgb(s.color);
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        for pair in finite.windows(2) {
            draw_line_segment_mut(
                &mut canvas,
                (px(pair[0].0), py(pair[0].1)),
                (px(pair[1].0), py(pair[1].1)),
                color,
            );
        }
        if finite.len() <= 30 {
            for &(x, y) in &finite {
                draw_filled_rect_mut(
                    &mut canvas,
                    imageproc::rect::Rect::at(px(x) as i32 - 2, py(y) as i32 - 2).of_size(5, 5),
                    color,
                );
            }
        }
    }
    if let Some(font) = &font {
        let (tw, _) = text_size(small, font, x_label);
        draw_text_mut(
            &mut canvas,
            ink,
            (LEFT + w / 2.0) as i32 - tw as i32 / 2,
            HEIGHT as i32 - 22,
            small,
            font,
            x_label,
        );
        draw_text_mut(&mut canvas, ink, 6, 12, small, font, y_label);
        let mut legend_x = LEFT + w;
        for s in series.iter().rev() {
            let (tw, _) = text_size(small, font, &s.label);
            legend_x -= tw as f32 + 30.0;
            draw_filled_rect_mut(
                &mut canvas,
                imageproc::rect::Rect::at(legend_x as i32, 16).of_size(14, 4),
                Rgb(s.color),
            );
            draw_text_mut(
                &mut canvas,
                ink,
                legend_x as i32 + 18,
                10,
                small,
                font,
                &s.label,
            );
        }
    }
    save_titled(canvas, font.as_ref(), title, LEFT as i32, path)
}

/// Writes `canvas` to `path`, with `title` at `x` along its top when a font was found.
fn save_titled(
    mut canvas: RgbImage,
    font: Option<&FontVec>,
    title: &str,
    x: i32,
    path: &Path,
) -> Result<()> {
    if let Some(font) = font {
        let ink = Rgb([20, 20, 20]);
        draw_text_mut(&mut canvas, ink, x, 10, PxScale::from(18.0), font, title);
    }
    save(&canvas, path)
}

/// Colours of categories (Tableau 10), cycled beyond ten.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Width of a scatter plot's legend column.
const LEGEND: u32 = 200;

/// A scatter plot of `(x, y, category)` points, each category in its colour, at `path`,
/// with a legend naming each category (`legend[category]`) beside it; categories past the
/// ten colours reuse them, and the legend says so.
pub fn scatter(
    path: &Path,
    title: &str,
    points: &[(f64, f64, usize)],
    legend: &[String],
) -> Result<()> {
    let legend_width = if legend.is_empty() { 0 } else { LEGEND };
    let mut canvas = RgbImage::from_pixel(WIDTH + legend_width, WIDTH, Rgb([255, 255, 255]));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y, _) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let span = (x1 - x0).max(y1 - y0).max(1e-12);
    let (side, margin) = (WIDTH as f64 - 2.0 * f64::from(TOP), f64::from(TOP));
    // Centred: a cloud narrower than it is tall (or a single point) sits in the middle.
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    for &(x, y, category) in points {
        let px = margin + side / 2.0 + (x - cx) / span * side;
        let py = margin + side / 2.0 - (y - cy) / span * side;
        let rect = imageproc::rect::Rect::at(px as i32 - 1, py as i32 - 1).of_size(3, 3);
        draw_filled_rect_mut(&mut canvas, rect, Rgb(PALETTE[category % PALETTE.len()]));
    }
    let font = font();
    if let Some(font) = &font {
        draw_legend(&mut canvas, font, WIDTH as i32, legend);
    }
    save_titled(canvas, font.as_ref(), title, 10, path)
}

/// One row per entry of `legend` (a swatch of its colour and its name) in a column from
/// `left`, as many as fit; the rest are counted in a last row.
fn draw_legend(canvas: &mut RgbImage, font: &FontVec, left: i32, legend: &[String]) {
    const ROW: i32 = 20;
    let ink = Rgb([20, 20, 20]);
    let small = PxScale::from(13.0);
    let fits = ((canvas.height() as i32 - 2 * TOP as i32) / ROW - 1).max(1) as usize;
    let shown = if legend.len() > fits {
        fits - 1
    } else {
        legend.len()
    };
    for (i, name) in legend.iter().take(shown).enumerate() {
        let y = TOP as i32 + i as i32 * ROW;
        let swatch = imageproc::rect::Rect::at(left, y + 3).of_size(12, 12);
        draw_filled_rect_mut(canvas, swatch, Rgb(PALETTE[i % PALETTE.len()]));
        draw_text_mut(canvas, ink, left + 18, y, small, font, name);
    }
    let mut notes = Vec::new();
    if legend.len() > shown {
        notes.push(format!("... and {} more", legend.len() - shown));
    }
    if legend.len() > PALETTE.len() {
        notes.push(format!("colours repeat every {}", PALETTE.len()));
    }
    for (i, note) in notes.iter().enumerate() {
        let y = TOP as i32 + (shown + i) as i32 * ROW;
        draw_text_mut(canvas, ink, left, y, small, font, note);
    }
}

/// Draws horizontal bars of factors (`(label, factor)`, e.g. how many times faster ours is
/// than a peer) on a log scale around 1x into a PNG at `path`: bars right of the 1x line
/// (green) are factors above 1, bars left of it (red) below 1.
pub fn factor_chart(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    const ROW: u32 = 24;
    const NAMES: f32 = 330.0;
    let height = TOP as u32 + BOTTOM as u32 + ROW * bars.len().max(1) as u32;
    let mut canvas = RgbImage::from_pixel(WIDTH, height, Rgb([255, 255, 255]));
    let finite = bars
        .iter()
        .map(|b| b.1)
        .filter(|f| f.is_finite() && *f > 0.0);
    let reach = finite.fold(2.0f64, |m, f| m.max(f.log2().abs().ceil()));
    let (left, w) = (NAMES, WIDTH as f32 - NAMES - RIGHT - 60.0);
    let px = |log2: f64| left + ((log2 + reach) / (2.0 * reach)) as f32 * w;
    let font = font();
    let (grid, ink) = (Rgb([225, 225, 225]), Rgb([20, 20, 20]));
    let small = PxScale::from(13.0);
    let plot_bottom = (height as f32 - BOTTOM) as i32;
    // A tick per doubling, or per quadrupling when the range is wide.
    let step = if reach > 4.0 { 2 } else { 1 };
    for tick in ((-(reach as i32))..=(reach as i32)).filter(|t| t % step == 0) {
        let x = px(f64::from(tick));
        let colour = if tick == 0 { Rgb([60, 60, 60]) } else { grid };
        draw_line_segment_mut(&mut canvas, (x, TOP), (x, plot_bottom as f32), colour);
        if let Some(font) = &font {
            let text = if tick >= 0 {
                format!("{}x", 1u64 << tick)
            } else {
                format!("1/{}", 1u64 << -tick)
            };
            let (tw, _) = text_size(small, font, &text);
            draw_text_mut(
                &mut canvas,
                ink,
                x as i32 - tw as i32 / 2,
                plot_bottom + 6,
                small,
                font,
                &text,
            );
        }
    }
    for (i, (name, factor)) in bars.iter().enumerate() {
        let y = TOP as i32 + (i as u32 * ROW) as i32;
        if factor.is_finite() && *factor > 0.0 {
            let (a, b) = (px(0.0), px(factor.log2().clamp(-reach, reach)));
            let colour = if *factor >= 1.0 {
                Rgb([60, 150, 80])
            } else {
                Rgb([200, 70, 50])
            };
            let (x, width) = (a.min(b) as i32, ((a - b).abs() as u32).max(1));
            draw_filled_rect_mut(
                &mut canvas,
                imageproc::rect::Rect::at(x, y + 4).of_size(width, ROW - 8),
                colour,
            );
        }
        if let Some(font) = &font {
            let (_, th) = text_size(small, font, name);
            let middle = y + (ROW as i32 - th as i32) / 2;
            draw_text_mut(&mut canvas, ink, 8, middle, small, font, name);
            let value = if factor.is_finite() {
                format!("{factor:.2}x")
            } else {
                "n/a".into()
            };
            draw_text_mut(
                &mut canvas,
                ink,
                (left + w) as i32 + 8,
                middle,
                small,
                font,
                &value,
            );
        }
    }
    save_titled(canvas, font.as_ref(), title, LEFT as i32, path)
}

/// Writes `canvas` to `path` as PNG.
pub(crate) fn save(canvas: &RgbImage, path: &Path) -> Result<()> {
    canvas.save(path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 0));
        let (t, decimals) = ticks(0.77, 0.81);
        assert!(
            t.len() >= 3 && t.iter().all(|v| (0.77..=0.81).contains(v)),
            "{t:?}"
        );
        assert_eq!(decimals, 2, "{t:?}");
        assert_eq!(label(0.25, 2), "0.25");
        assert_eq!(label(1200.0, 1), "1200");
        assert_eq!(ticks(0.0, 0.1).1, 2, "a step of 0.02 needs two decimals");
        assert_eq!(
            ticks(0.0, 0.12).1,
            3,
            "a step of 0.025 needs three decimals"
        );
    }

    #[test]
    fn every_tick_of_a_single_value_reads_differently() {
        for value in [0.0, 1.0, 85.28, 1e-4, 1234.5, -3.0] {
            let (low, high) = widen(value, value, 0.05);
            assert!(low < value && value < high, "{value} inside {low}..{high}");
            let (values, decimals) = ticks(low, high);
            let labels: Vec<String> = values.iter().map(|v| label(*v, decimals)).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert!(labels.len() >= 3, "{value}: {labels:?}");
            assert_eq!(unique, labels, "{value}: {labels:?}");
        }
    }

    #[test]
    fn a_chart_of_one_point_puts_it_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.png");
        let color = [200, 70, 30];
        let series = Series {
            label: "kNN".into(),
            color,
            points: vec![(1.0, 85.28)],
        };
        line_chart(&path, "one", "epoch", "%", &[series]).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        let drawn: Vec<(u32, u32)> = image
            .enumerate_pixels()
            .filter(|(_, y, p)| p.0 == color && *y > TOP as u32)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!drawn.is_empty(), "the point is drawn");
        let (w, h) = (WIDTH as f32 - LEFT - RIGHT, HEIGHT as f32 - TOP - BOTTOM);
        let (cx, cy) = ((LEFT + w / 2.0) as u32, (TOP + h / 2.0) as u32);
        for (x, y) in drawn {
            assert!(x.abs_diff(cx) <= 3 && y.abs_diff(cy) <= 3, "({x}, {y})");
        }
    }

    #[test]
    fn a_scatter_colours_each_category() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.png");
        let points: Vec<(f64, f64, usize)> = (0..200)
            .map(|i| ((i % 20) as f64, (i / 20) as f64, i % 3))
            .collect();
        let legend: Vec<String> = (0..3).map(|c| format!("cluster {c}")).collect();
        scatter(&path, "map", &points, &legend).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.width(), WIDTH + LEGEND, "room for the legend");
        // Each colour appears in the legend column too, as a swatch.
        for colour in &PALETTE[..3] {
            let in_legend = image
                .enumerate_pixels()
                .filter(|(x, _, p)| *x >= WIDTH && p.0 == *colour)
                .count();
            assert!(in_legend >= 100, "{colour:?}: {in_legend} legend pixels");
        }
        for colour in &PALETTE[..3] {
            assert!(
                image.pixels().any(|p| p.0 == *colour),
                "{colour:?} is drawn"
            );
        }
    }

    #[test]
    fn factors_are_drawn_either_side_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        let bars = vec![
            ("faster".to_owned(), 3.0),
            ("slower".to_owned(), 0.4),
            ("none".to_owned(), f64::NAN),
        ];
        factor_chart(&path, "Ours vs peers", &bars).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.width(), WIDTH);
        let green = image.pixels().filter(|p| p.0 == [60, 150, 80]).count();
        let red = image.pixels().filter(|p| p.0 == [200, 70, 50]).count();
        assert!(green > 100 && red > 100, "green {green}, red {red}");
    }
}
