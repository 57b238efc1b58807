//! The demo video set for temporal learning: Fashion-MNIST items that move, rotate and
//! change size over textured, panning backgrounds, in scenes separated by hard cuts, written
//! as real video files by `ffmpeg` so that training reads them through the real decoder.
//!
//! Every video has its own *cast*: a few items, each with its own tint. Each scene shows two
//! or more of them over a fresh background, at fresh places and speeds, so frames of one
//! video look alike only through their items, not their backgrounds. The scene boundaries
//! go into `scenes.tsv` next to the videos; evaluations use them to leave a query's own
//! scene out of the search (otherwise its near-duplicate neighbours answer it).

use std::collections::HashMap;
use std::f32::consts::PI;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::{Error, Image, Result};

/// The name of the scene-boundary file in a folder of demo videos.
pub const SCENES_FILE: &str = "scenes.tsv";

/// The shape of a demo set.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSpec {
    /// Number of videos.
    pub videos: usize,
    /// Scenes per video (cuts between them).
    pub scenes: usize,
    /// Frames per scene, drawn from this inclusive range.
    pub scene_frames: (usize, usize),
    /// Side of the square frames, in pixels (even, as H.264 needs).
    pub size: u32,
    /// Items in a video's cast.
    pub cast: usize,
    /// Frames per second written into the files.
    pub fps: u32,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            videos: 40,
            scenes: 6,
            scene_frames: (10, 18),
            size: 48,
            cast: 3,
            fps: 10,
            seed: 0,
        }
    }
}

impl DemoSpec {
    fn validate(&self, items: usize) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOption(m));
        if self.videos == 0 || self.scenes == 0 || self.fps == 0 {
            return bad("videos, scenes and fps must be at least 1".into());
        }
        if self.scene_frames.0 == 0 || self.scene_frames.0 > self.scene_frames.1 {
            return bad(format!(
                "scene_frames must be a range of at least one frame, got {:?}",
                self.scene_frames
            ));
        }
        if self.size < 16 || !self.size.is_multiple_of(2) {
            return bad(format!(
                "size must be even and at least 16, got {}",
                self.size
            ));
        }
        if !(2..=PALETTE.len()).contains(&self.cast) {
            return bad(format!(
                "cast must be in 2..={}, got {}",
                PALETTE.len(),
                self.cast
            ));
        }
        if items < self.cast {
            return bad(format!(
                "{items} item images cannot make a cast of {}",
                self.cast
            ));
        }
        Ok(())
    }
}

/// One written video: its name (the file stem) and where each scene starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoVideo {
    /// The file stem (`video_007`).
    pub name: String,
    /// Frames in all.
    pub frames: usize,
    /// The first frame of each scene (the first is 0).
    pub scene_starts: Vec<usize>,
}

/// Item tints: saturated colours, distinct within a cast.
const PALETTE: [[f32; 3]; 8] = [
    [255.0, 70.0, 70.0],
    [70.0, 235.0, 70.0],
    [80.0, 130.0, 255.0],
    [255.0, 220.0, 50.0],
    [245.0, 80.0, 245.0],
    [50.0, 225.0, 225.0],
    [255.0, 150.0, 30.0],
    [240.0, 240.0, 240.0],
];

/// Writes `spec.videos` videos (`video_000.mp4`...) and [`SCENES_FILE`] into `dir`, with
/// items drawn from `items` (grayscale `[H, W, 1]` images, e.g. Fashion-MNIST). The same
/// spec and items give the same frames. Each file is written under a temporary name and
/// renamed when complete; `scenes.tsv` is written last, so its presence means the set is
/// whole.
pub fn write_demo_videos(dir: &Path, items: &[Image], spec: &DemoSpec) -> Result<Vec<DemoVideo>> {
    spec.validate(items.len())?;
    if let Some(bad) = items.iter().find(|i| i.dim().2 != 1) {
        return Err(Error::InvalidOption(format!(
            "demo items must be grayscale, got an image of shape {:?}",
            bad.dim()
        )));
    }
    crate::check_ffmpeg("ffmpeg")?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let encoder = if h264_available() {
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"]
    } else {
        ["-c:v", "mpeg4", "-q:v", "3", "-g", "30"]
    };
    let videos = (0..spec.videos)
        .into_par_iter()
        .map(|v| {
            let mut rng = StdRng::seed_from_u64(spec.seed.wrapping_mul(1_000_003) ^ v as u64);
            let name = format!("video_{v:03}");
            let (frames, scene_starts) = render_video(items, spec, &mut rng);
            encode(&dir.join(format!("{name}.mp4")), &frames, spec, &encoder)?;
            Ok(DemoVideo {
                name,
                frames: frames.len() / (spec.size * spec.size * 3) as usize,
                scene_starts,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut table = String::from("# video\tfirst frame of each scene\n");
    for video in &videos {
        let starts: Vec<String> = video.scene_starts.iter().map(|s| s.to_string()).collect();
        table.push_str(&format!("{}\t{}\n", video.name, starts.join(",")));
    }
    let path = dir.join(SCENES_FILE);
    let temp = dir.join(format!(".{SCENES_FILE}.part"));
    fs::write(&temp, table).map_err(|e| Error::io(&temp, e))?;
    fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(videos)
}

/// Reads a folder's [`SCENES_FILE`]: each video's name and the first frame of each of its
/// scenes. `None` when the folder has no such file.
pub fn read_scenes(dir: &Path) -> Result<Option<HashMap<String, Vec<usize>>>> {
    let path = dir.join(SCENES_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut scenes = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            Error::format(
                &path,
                format!("line {}: expected `name<TAB>0,f1,f2...`", n + 1),
            )
        };
        let (name, starts) = line.split_once('\t').ok_or_else(bad)?;
        let starts = starts
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        if starts.first() != Some(&0) || starts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad());
        }
        scenes.insert(name.to_owned(), starts);
    }
    Ok(Some(scenes))
}

/// Whether this ffmpeg has the H.264 encoder (Debian's has; minimal builds may not).
fn h264_available() -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libx264"))
}

/// Pipes raw RGB `frames` into ffmpeg, writing `path` through a temporary file.
fn encode(path: &Path, frames: &[u8], spec: &DemoSpec, encoder: &[&str]) -> Result<()> {
    let temp: PathBuf = path.with_extension("part.mp4");
    let size = format!("{}x{}", spec.size, spec.size);
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "rawvideo"])
        .args([
            "-pix_fmt",
            "rgb24",
            "-s",
            &size,
            "-r",
            &spec.fps.to_string(),
        ])
        .args(["-i", "-"])
        .args(encoder)
        .args(["-pix_fmt", "yuv420p", "-f", "mp4"])
        .arg(&temp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(&temp, e))?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(frames);
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    let status = child.wait().map_err(|e| Error::io(&temp, e))?;
    if written.is_err() || !status.success() {
        let _ = fs::remove_file(&temp);
        return Err(Error::Video {
            path: path.to_path_buf(),
            message: format!("encoding failed ({status}); ffmpeg: {}", said.trim()),
        });
    }
    fs::rename(&temp, path).map_err(|e| Error::io(path, e))
}

/// A background: two colours blended by a moving pattern.
struct Background {
    pattern: Pattern,
    low: [f32; 3],
    high: [f32; 3],
    /// Pan in pixels per frame.
    drift: (f32, f32),
}

enum Pattern {
    /// Parallel bands at an angle.
    Stripes { freq: f32, angle: f32 },
    /// A soft checkerboard.
    Checker { freq: f32 },
    /// Rings around a point.
    Rings { freq: f32, centre: (f32, f32) },
    /// Bilinear value noise on a periodic grid of `cell`-pixel cells.
    Noise {
        grid: Vec<f32>,
        side: usize,
        cell: f32,
    },
}

impl Background {
    fn random(rng: &mut StdRng) -> Self {
        let freq = rng.gen_range(1.0 / 14.0..1.0 / 5.0);
        let pattern = match rng.gen_range(0..4) {
            0 => Pattern::Stripes {
                freq,
                angle: rng.gen_range(0.0..PI),
            },
            1 => Pattern::Checker { freq },
            2 => Pattern::Rings {
                freq,
                centre: (rng.gen_range(-20.0..60.0), rng.gen_range(-20.0..60.0)),
            },
            _ => {
                let side = 6;
                Pattern::Noise {
                    grid: (0..side * side).map(|_| rng.r#gen::<f32>()).collect(),
                    side,
                    cell: rng.gen_range(5.0..12.0),
                }
            }
        };
        let colour = |rng: &mut StdRng| [0; 3].map(|_: u8| rng.gen_range(15.0..170.0));
        let angle = rng.gen_range(0.0..2.0 * PI);
        let speed = rng.gen_range(0.2..1.2);
        Self {
            pattern,
            low: colour(rng),
            high: colour(rng),
            drift: (speed * angle.cos(), speed * angle.sin()),
        }
    }

    /// The blend weight in `[0, 1]` at pixel `(x, y)` of frame `t` of the scene.
    fn value(&self, x: f32, y: f32, t: f32) -> f32 {
        let (x, y) = (x + self.drift.0 * t, y + self.drift.1 * t);
        match &self.pattern {
            Pattern::Stripes { freq, angle } => {
                0.5 + 0.5 * (2.0 * PI * freq * (x * angle.cos() + y * angle.sin())).sin()
            }
            Pattern::Checker { freq } => {
                let s = (2.0 * PI * freq * x).sin() * (2.0 * PI * freq * y).sin();
                0.5 + 0.5 * (4.0 * s).tanh()
            }
            Pattern::Rings { freq, centre } => {
                let r = ((x - centre.0).powi(2) + (y - centre.1).powi(2)).sqrt();
                0.5 + 0.5 * (2.0 * PI * freq * r).sin()
            }
            Pattern::Noise { grid, side, cell } => {
                let (gx, gy) = (x / cell, y / cell);
                let (x0, y0) = (gx.floor(), gy.floor());
                let (fx, fy) = (gx - x0, gy - y0);
                let at = |i: f32, j: f32| {
                    let n = *side as i64;
                    grid[((j as i64).rem_euclid(n) * n + (i as i64).rem_euclid(n)) as usize]
                };
                let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
                let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
                top * (1.0 - fy) + bottom * fy
            }
        }
    }
}

/// An item of the cast on screen: where it is and how it moves during one scene.
struct Actor {
    item: usize,
    tint: [f32; 3],
    position: (f32, f32),
    velocity: (f32, f32),
    angle: f32,
    spin: f32,
    scale: f32,
    pulse: (f32, f32),
}

/// Renders every frame of one video (raw RGB, frame after frame) and the scene starts.
fn render_video(items: &[Image], spec: &DemoSpec, rng: &mut StdRng) -> (Vec<u8>, Vec<usize>) {
    let size = spec.size as usize;
    let mut tints = PALETTE.to_vec();
    tints.shuffle(rng);
    let cast: Vec<(usize, [f32; 3])> = (0..spec.cast)
        .map(|k| (rng.gen_range(0..items.len()), tints[k]))
        .collect();
    let (mut bytes, mut starts, mut frame) = (Vec::new(), Vec::new(), vec![0f32; size * size * 3]);
    for _ in 0..spec.scenes {
        starts.push(bytes.len() / (size * size * 3));
        let background = Background::random(rng);
        let shown = rng.gen_range(2..=spec.cast);
        let mut actors: Vec<Actor> = cast
            .choose_multiple(rng, shown)
            .map(|&(item, tint)| {
                let heading = rng.gen_range(0.0..2.0 * PI);
                let speed = rng.gen_range(0.4..1.8);
                Actor {
                    item,
                    tint,
                    position: (
                        rng.gen_range(0.2..0.8) * size as f32,
                        rng.gen_range(0.2..0.8) * size as f32,
                    ),
                    velocity: (speed * heading.cos(), speed * heading.sin()),
                    angle: rng.gen_range(-0.5..0.5),
                    spin: rng.gen_range(-0.1..0.1),
                    scale: rng.gen_range(0.55..0.95) * size as f32 / 48.0,
                    pulse: (rng.gen_range(0.0..2.0 * PI), rng.gen_range(0.1..0.3)),
                }
            })
            .collect();
        let length = rng.gen_range(spec.scene_frames.0..=spec.scene_frames.1);
        for t in 0..length {
            let t = t as f32;
            for y in 0..size {
                for x in 0..size {
                    let v = background.value(x as f32, y as f32, t);
                    for c in 0..3 {
                        frame[(y * size + x) * 3 + c] =
                            background.low[c] * (1.0 - v) + background.high[c] * v;
                    }
                }
            }
            for actor in &actors {
                let scale = actor.scale * (1.0 + 0.15 * (actor.pulse.0 + actor.pulse.1 * t).sin());
                draw_item(&mut frame, size, &items[actor.item], actor, scale);
            }
            bytes.extend(
                frame
                    .iter()
                    .map(|&v| (v + rng.gen_range(-5.0..5.0)).round().clamp(0.0, 255.0) as u8),
            );
            for actor in &mut actors {
                step(actor, size as f32);
            }
        }
    }
    (bytes, starts)
}

/// Moves an actor one frame on, bouncing off the frame's edges.
fn step(actor: &mut Actor, size: f32) {
    let margin = 0.15 * size;
    for (p, v) in [
        (&mut actor.position.0, &mut actor.velocity.0),
        (&mut actor.position.1, &mut actor.velocity.1),
    ] {
        *p += *v;
        if *p < margin || *p > size - margin {
            *v = -*v;
            *p = p.clamp(margin, size - margin);
        }
    }
    actor.angle += actor.spin;
}

/// Composites `item` (gray, its brightness as opacity) tinted onto `frame`, rotated by the
/// actor's angle, scaled by `scale` and centred on its position (bilinear sampling).
fn draw_item(frame: &mut [f32], size: usize, item: &Image, actor: &Actor, scale: f32) {
    let (h, w, _) = item.dim();
    let (cx, cy) = actor.position;
    let reach = 0.5 * (h.max(w) as f32) * scale * std::f32::consts::SQRT_2 + 1.0;
    let (sin, cos) = actor.angle.sin_cos();
    let sample = |u: f32, v: f32| -> f32 {
        let (u0, v0) = (u.floor(), v.floor());
        let (fu, fv) = (u - u0, v - v0);
        let at = |i: f32, j: f32| {
            if i < 0.0 || j < 0.0 || i >= w as f32 || j >= h as f32 {
                0.0
            } else {
                f32::from(item[[j as usize, i as usize, 0]]) / 255.0
            }
        };
        let top = at(u0, v0) * (1.0 - fu) + at(u0 + 1.0, v0) * fu;
        let bottom = at(u0, v0 + 1.0) * (1.0 - fu) + at(u0 + 1.0, v0 + 1.0) * fu;
        top * (1.0 - fv) + bottom * fv
    };
    let low = |c: f32| ((c - reach).floor().max(0.0)) as usize;
    let high = |c: f32| ((c + reach).ceil().min(size as f32)) as usize;
    for y in low(cy)..high(cy) {
        for x in low(cx)..high(cx) {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let u = (cos * dx + sin * dy) / scale + 0.5 * w as f32 - 0.5;
            let v = (-sin * dx + cos * dy) / scale + 0.5 * h as f32 - 0.5;
            let intensity = sample(u, v);
            if intensity <= 0.0 {
                continue;
            }
            let alpha = (1.6 * intensity).min(1.0);
            let shade = 0.3 + 0.7 * intensity;
            for c in 0..3 {
                let pixel = &mut frame[(y * size + x) * 3 + c];
                *pixel = *pixel * (1.0 - alpha) + actor.tint[c] * shade * alpha;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, FrameOptions, VideoFiles};

    fn items() -> Vec<Image> {
        // A filled disc and a bar: distinct shapes with soft edges.
        let disc = Image::from_shape_fn((28, 28, 1), |(y, x, _)| {
            let r = ((y as f32 - 13.5).powi(2) + (x as f32 - 13.5).powi(2)).sqrt();
            (255.0 * (1.0 - (r - 9.0).clamp(0.0, 1.0))) as u8
        });
        let bar = Image::from_shape_fn((28, 28, 1), |(y, x, _)| {
            if (4..24).contains(&y) && (11..17).contains(&x) {
                230
            } else {
                0
            }
        });
        vec![disc, bar, Image::from_elem((28, 28, 1), 200)]
    }

    fn small() -> DemoSpec {
        DemoSpec {
            videos: 3,
            scenes: 2,
            scene_frames: (5, 8),
            size: 32,
            cast: 2,
            fps: 10,
            seed: 7,
        }
    }

    #[test]
    fn the_set_decodes_with_every_frame_and_scene() {
        let dir = tempfile::tempdir().unwrap();
        let videos = write_demo_videos(dir.path(), &items(), &small()).unwrap();
        assert_eq!(videos.len(), 3);
        let scenes = read_scenes(dir.path()).unwrap().unwrap();
        for video in &videos {
            assert_eq!(scenes[&video.name], video.scene_starts);
            assert_eq!(video.scene_starts.len(), 2);
            assert!((10..=16).contains(&video.frames), "{video:?}");
        }
        let options = FrameOptions {
            size: Some((32, 32)),
            ..Default::default()
        };
        let set = VideoFiles::open(dir.path(), options, dir.path().join("cache"), true).unwrap();
        let counts: Vec<usize> = videos.iter().map(|v| v.frames).collect();
        assert_eq!(set.frame_counts(), counts);
        assert_eq!(set.class_names(), ["video_000", "video_001", "video_002"]);
        // Frames are not blank: backgrounds and items vary across the picture.
        let frame = set.get(0).unwrap().image;
        let (lo, hi) = frame
            .iter()
            .fold((255, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo > 60, "range {lo}..{hi}");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("part")), "{names:?}");
    }

    #[test]
    fn consecutive_frames_are_closer_than_frames_across_a_cut() {
        let mut rng = StdRng::seed_from_u64(3);
        let spec = DemoSpec {
            scenes: 2,
            scene_frames: (10, 10),
            ..small()
        };
        let (bytes, starts) = render_video(&items(), &spec, &mut rng);
        assert_eq!(starts, [0, 10]);
        let frame = |t: usize| &bytes[t * 32 * 32 * 3..(t + 1) * 32 * 32 * 3];
        let distance = |a: &[u8], b: &[u8]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
                .sum::<f64>()
        };
        let within = distance(frame(4), frame(5));
        let across = distance(frame(9), frame(10));
        assert!(within < across, "within {within}, across {across}");
    }

    #[test]
    fn the_same_spec_renders_the_same_frames() {
        let render = || render_video(&items(), &small(), &mut StdRng::seed_from_u64(1));
        assert_eq!(render(), render());
    }

    #[test]
    fn bad_specs_and_items_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let odd = DemoSpec {
            size: 33,
            ..small()
        };
        assert!(write_demo_videos(dir.path(), &items(), &odd).is_err());
        let rgb = vec![Image::zeros((28, 28, 3)); 3];
        let err = write_demo_videos(dir.path(), &rgb, &small()).unwrap_err();
        assert!(err.to_string().contains("grayscale"), "{err}");
        let few = DemoSpec { cast: 5, ..small() };
        assert!(write_demo_videos(dir.path(), &items(), &few).is_err());
    }

    #[test]
    fn a_malformed_scene_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_scenes(dir.path()).unwrap(), None);
        fs::write(dir.path().join(SCENES_FILE), "v\t0,5,3\n").unwrap();
        let err = read_scenes(dir.path()).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
