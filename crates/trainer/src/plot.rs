//! PNG line charts of a run's curves (`loss.png`, `knn.png`), drawn from `metrics.jsonl`.

use std::path::Path;

use ab_glyph::{FontVec, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_line_segment_mut, draw_text_mut, text_size};

use crate::metrics::Record;
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

pub(crate) fn font() -> Option<FontVec> {
    let from_env = std::env::var_os("CONTRASTIVE_FONT").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(FONT_PATHS.iter().map(std::path::PathBuf::from))
        .find_map(|p| FontVec::try_from_vec(std::fs::read(p).ok()?).ok())
}

/// About five round tick values covering `[low, high]`.
fn ticks(low: f64, high: f64) -> Vec<f64> {
    let span = (high - low).max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= high + step * 1e-9)
        .collect()
}

fn label(value: f64) -> String {
    if value.abs() >= 1000.0 || value == value.round() {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
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
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    (y0, y1) = (y0 - pad, y1 + pad);
    let (w, h) = (WIDTH as f32 - LEFT - RIGHT, HEIGHT as f32 - TOP - BOTTOM);
    let px = |x: f64| LEFT + ((x - x0) / (x1 - x0)) as f32 * w;
    let py = |y: f64| TOP + h - ((y - y0) / (y1 - y0)) as f32 * h;
    let font = font();
    let (grid, axis, ink) = (Rgb([225, 225, 225]), Rgb([60, 60, 60]), Rgb([20, 20, 20]));
    let small = PxScale::from(14.0);

    for y in ticks(y0, y1) {
        draw_line_segment_mut(&mut canvas, (LEFT, py(y)), (LEFT + w, py(y)), grid);
        if let Some(font) = &font {
            let text = label(y);
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
    for x in ticks(x0, x1) {
        draw_line_segment_mut(&mut canvas, (px(x), TOP), (px(x), TOP + h), grid);
        if let Some(font) = &font {
            let text = label(x);
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
    canvas
        .save(path)
        .map_err(|e| Error::Run(format!("{}: {e}", path.display())))
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

/// A scatter plot of `(x, y, category)` points, each category in its colour, at `path`.
pub fn scatter(path: &Path, title: &str, points: &[(f64, f64, usize)]) -> Result<()> {
    let mut canvas = RgbImage::from_pixel(WIDTH, WIDTH, Rgb([255, 255, 255]));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y, _) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let span = (x1 - x0).max(y1 - y0).max(1e-12);
    let (side, margin) = (WIDTH as f64 - 2.0 * f64::from(TOP), f64::from(TOP));
    for &(x, y, category) in points {
        let px = margin + (x - x0) / span * side;
        let py = margin + side - (y - y0) / span * side;
        let rect = imageproc::rect::Rect::at(px as i32 - 1, py as i32 - 1).of_size(3, 3);
        draw_filled_rect_mut(&mut canvas, rect, Rgb(PALETTE[category % PALETTE.len()]));
    }
    save_titled(canvas, font().as_ref(), title, 10, path)
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

/// Writes `loss.png` (every step's loss and its moving average) and, when the run measured
/// them, `knn.png` (kNN top-1 per epoch) and `recall.png` (video: same-video recall@1 per
/// epoch) into `run_dir`.
pub fn plot_run(run_dir: &Path, records: &[Record]) -> Result<()> {
    let losses: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step { step, loss, .. } => Some((*step as f64, *loss)),
            Record::Epoch { .. } => None,
        })
        .collect();
    let window = (losses.len() / 50).max(1);
    let mut sum = 0.0;
    let smooth = losses
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= losses[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect();
    line_chart(
        &run_dir.join("loss.png"),
        "Training loss",
        "step",
        "loss",
        &[
            Series {
                label: "per step".into(),
                color: [170, 200, 235],
                points: losses,
            },
            Series {
                label: format!("mean of {window}"),
                color: [20, 80, 160],
                points: smooth,
            },
        ],
    )?;
    // (epoch, kNN top-1, same-video recall@1) of every epoch record.
    let epochs: Vec<[Option<f64>; 3]> = records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch {
                epochs_done,
                knn_top1,
                video_recall_at_1,
                ..
            } => Some([Some(*epochs_done as f64), *knn_top1, *video_recall_at_1]),
            Record::Step { .. } => None,
        })
        .collect();
    let percent = |column: usize| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|e| Some((e[0]?, e[column]? * 100.0)))
            .collect()
    };
    let charts = [
        (
            "knn.png",
            "kNN top-1 on the held-out split",
            "kNN top-1",
            percent(1),
        ),
        (
            "recall.png",
            "Same-video recall@1 on held-out videos",
            "recall@1",
            percent(2),
        ),
    ];
    for (file, title, label, points) in charts {
        if !points.is_empty() {
            line_chart(
                &run_dir.join(file),
                title,
                "epoch",
                "%",
                &[Series {
                    label: label.into(),
                    color: [200, 70, 30],
                    points,
                }],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.77, 0.81);
        assert!(
            t.len() >= 3 && t.iter().all(|v| (0.77..=0.81).contains(v)),
            "{t:?}"
        );
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(1200.0), "1200");
    }

    #[test]
    fn a_scatter_colours_each_category() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.png");
        let points: Vec<(f64, f64, usize)> = (0..200)
            .map(|i| ((i % 20) as f64, (i / 20) as f64, i % 3))
            .collect();
        scatter(&path, "map", &points).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
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

    #[test]
    fn a_run_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<Record> = (1..=100)
            .map(|s| Record::Step {
                step: s,
                epoch: s / 50,
                loss: 5.0 / (s as f64).sqrt(),
                lr: 0.1,
                views_per_s: 1.0,
            })
            .collect();
        records.push(Record::Epoch {
            step: 50,
            epochs_done: 1,
            mean_loss: 1.0,
            train_s: 1.0,
            knn_top1: Some(0.7),
            video_recall_at_1: Some(0.3),
            eval_s: Some(1.0),
        });
        records.push(Record::Epoch {
            step: 100,
            epochs_done: 2,
            mean_loss: 0.5,
            train_s: 1.0,
            knn_top1: Some(0.8),
            video_recall_at_1: Some(0.4),
            eval_s: Some(1.0),
        });
        plot_run(dir.path(), &records).unwrap();
        for name in ["loss.png", "knn.png", "recall.png"] {
            let image = image::open(dir.path().join(name)).unwrap().to_rgb8();
            assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
            // Something besides the white background was drawn in the plot area.
            let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
            assert!(inked > 1000, "{name}: {inked} pixels drawn");
        }
    }
}
