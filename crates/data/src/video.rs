//! Video: files decoded by the `ffmpeg` executable, streamed frame by frame, and datasets of
//! frames (folders of frame images, or video files decoded once into a frame cache).
//!
//! A video dataset's labels are video indices and its class names the video names, so "same
//! label" means "same video"; each sample's [`Source::Frame`] gives the video and frame index.

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::dataset::check_index;
use crate::folder::{FolderOptions, ImageFolder, Layout, SkippedFile};
use crate::{Dataset, Error, Image, Result, Sample, Source};

/// Which pixels ffmpeg delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VideoChannels {
    /// 1 channel (`gray`).
    Gray,
    /// 3 channels (`rgb24`).
    #[default]
    Rgb,
}

impl VideoChannels {
    fn count(self) -> usize {
        match self {
            VideoChannels::Gray => 1,
            VideoChannels::Rgb => 3,
        }
    }

    fn pix_fmt(self) -> &'static str {
        match self {
            VideoChannels::Gray => "gray",
            VideoChannels::Rgb => "rgb24",
        }
    }
}

/// How frames are taken from a video file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameOptions {
    /// Frames per second to sample (ffmpeg's `fps` filter); `None` keeps every frame.
    pub fps: Option<f64>,
    /// Output `(height, width)` (bilinear scaling); `None` keeps the video's size.
    pub size: Option<(u32, u32)>,
    /// Gray or RGB.
    pub channels: VideoChannels,
}

impl FrameOptions {
    fn validate(&self) -> Result<()> {
        if let Some(fps) = self.fps.filter(|f| !(f.is_finite() && *f > 0.0)) {
            return Err(Error::InvalidOption(format!(
                "fps must be a positive number, got {fps}"
            )));
        }
        if let Some((h, w)) = self.size.filter(|(h, w)| *h == 0 || *w == 0) {
            return Err(Error::InvalidOption(format!(
                "frame size must be non-zero, got {h}x{w}"
            )));
        }
        Ok(())
    }
}

/// Checks that `program` (`ffmpeg` or `ffprobe`) runs.
pub fn check_ffmpeg(program: &'static str) -> Result<()> {
    match Command::new(program)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => Err(Error::FfmpegMissing { program }),
    }
}

/// Width, height, frame rate and duration of a video's first video stream, from `ffprobe`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Duration in seconds, when the container says.
    pub duration: Option<f64>,
    /// Frames per second (the stream's base rate), when the stream says.
    pub fps: Option<f64>,
}

/// Reads a video's size and duration with `ffprobe`. An empty, unreadable or corrupt file,
/// or one without a video stream, is [`Error::Video`].
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo> {
    let path = path.as_ref();
    check_readable(path)?;
    check_ffmpeg("ffprobe")?;
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=width,height,r_frame_rate:format=duration",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(path)
        .output()
        .map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix('=')
                .map(str::trim)
                .map(str::to_owned)
        })
    };
    let (width, height) = (
        field("width").and_then(|v| v.parse().ok()),
        field("height").and_then(|v| v.parse().ok()),
    );
    match (out.status.success(), width, height) {
        (true, Some(width), Some(height)) => Ok(VideoInfo {
            width,
            height,
            duration: field("duration").and_then(|v| v.parse().ok()),
            fps: field("r_frame_rate").and_then(|v| {
                let (num, den) = v.split_once('/').unwrap_or((&v, "1"));
                let rate = num.parse::<f64>().ok()? / den.parse::<f64>().ok()?;
                (rate.is_finite() && rate > 0.0).then_some(rate)
            }),
        }),
        _ => Err(video_error(
            path,
            "not a readable video (no video stream)",
            &out.stderr,
        )),
    }
}

fn check_readable(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() == 0 {
        return Err(Error::Video {
            path: path.to_path_buf(),
            message: "empty file (0 bytes)".into(),
        });
    }
    Ok(())
}

fn video_error(path: &Path, what: &str, stderr: &[u8]) -> Error {
    let said = String::from_utf8_lossy(stderr);
    let said = said.trim();
    let message = if said.is_empty() {
        what.to_owned()
    } else {
        format!("{what}; ffmpeg: {said}")
    };
    Error::Video {
        path: path.to_path_buf(),
        message,
    }
}

/// Frames of one video file, decoded by an `ffmpeg` child process and read one at a time
/// from its output: memory holds one frame, whatever the video's length.
pub struct FrameReader {
    path: PathBuf,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
    shape: (usize, usize, usize),
    produced: usize,
    finished: bool,
}

impl FrameReader {
    /// Starts decoding `path` with `options`.
    pub fn open(path: impl AsRef<Path>, options: &FrameOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        options.validate()?;
        let (height, width) = match options.size {
            Some(size) => size,
            None => {
                let info = probe(&path)?;
                (info.height, info.width)
            }
        };
        check_readable(&path)?;
        check_ffmpeg("ffmpeg")?;
        let mut filters = Vec::new();
        if let Some(fps) = options.fps {
            filters.push(format!("fps={fps}"));
        }
        filters.push(format!("scale={width}:{height}:flags=bilinear"));
        let mut child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-an", "-sn", "-vf", &filters.join(","), "-f", "rawvideo"])
            .args(["-pix_fmt", options.channels.pix_fmt(), "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(&path, e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Drain stderr on a thread so a chatty ffmpeg never blocks on a full pipe.
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        });
        let shape = (height as usize, width as usize, options.channels.count());
        Ok(Self {
            path,
            child,
            stdout,
            stderr: Some(stderr),
            shape,
            produced: 0,
            finished: false,
        })
    }

    /// `(height, width, channels)` of every frame.
    pub fn frame_shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    fn finish(&mut self) -> Option<Result<Image>> {
        self.finished = true;
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match status {
            Ok(s) if s.success() && self.produced > 0 => None,
            Ok(s) if s.success() => Some(Err(video_error(
                &self.path,
                "the video has no frames",
                &stderr,
            ))),
            Ok(s) => Some(Err(video_error(
                &self.path,
                &format!("decoding failed ({s})"),
                &stderr,
            ))),
            Err(e) => Some(Err(Error::io(&self.path, e))),
        }
    }
}

impl Iterator for FrameReader {
    type Item = Result<Image>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let (h, w, c) = self.shape;
        let mut frame = vec![0u8; h * w * c];
        let mut filled = 0;
        while filled < frame.len() {
            match self.stdout.read(&mut frame[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.finished = true;
                    return Some(Err(Error::io(&self.path, e)));
                }
            }
        }
        if filled == 0 {
            return self.finish();
        }
        if filled < frame.len() {
            self.finished = true;
            return Some(Err(Error::Video {
                path: self.path.clone(),
                message: format!(
                    "ffmpeg stopped mid-frame ({filled} of {} bytes)",
                    frame.len()
                ),
            }));
        }
        self.produced += 1;
        Some(Ok(
            Image::from_shape_vec(self.shape, frame).expect("frame length matches its shape")
        ))
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Videos stored as folders of frame images: `root/<video>/<frames>`, frames in natural name
/// order (`f2.png` before `f10.png`).
#[derive(Debug)]
pub struct FrameFolders {
    frames: ImageFolder,
    starts: Vec<usize>,
}

impl FrameFolders {
    /// Opens `root`, whose subfolders are videos. `options.layout` is ignored.
    pub fn open(root: impl AsRef<Path>, options: FolderOptions) -> Result<Self> {
        let frames = ImageFolder::open(
            root,
            FolderOptions {
                layout: Layout::Classes,
                ..options
            },
        )?;
        let mut starts = vec![0; frames.class_names().len() + 1];
        for i in 0..frames.len() {
            starts[frames.label(i) + 1] = i + 1;
        }
        for v in 1..starts.len() {
            starts[v] = starts[v].max(starts[v - 1]);
        }
        Ok(Self { frames, starts })
    }

    /// Number of frames of each video.
    pub fn frame_counts(&self) -> Vec<usize> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Frame files that could not be read when opening.
    pub fn skipped(&self) -> &[SkippedFile] {
        self.frames.skipped()
    }
}

impl Dataset for FrameFolders {
    fn len(&self) -> usize {
        self.frames.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let mut sample = self.frames.get(index)?;
        let video = sample.label.expect("frame folders are labeled by video");
        let path = match sample.source {
            Source::File(path) => path,
            other => unreachable!("image folders give file sources, not {other:?}"),
        };
        sample.source = Source::Frame {
            video,
            frame: index - self.starts[video],
            path,
        };
        Ok(sample)
    }

    fn class_names(&self) -> &[String] {
        self.frames.class_names()
    }
}

/// The file extensions taken as video files.
pub const VIDEO_EXTENSIONS: [&str; 8] = ["mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg"];

/// Whether `path` is named as a video file (one of [`VIDEO_EXTENSIONS`], any case).
pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| VIDEO_EXTENSIONS.contains(&x.to_string_lossy().to_lowercase().as_str()))
}

/// Video files decoded once (streamed through [`FrameReader`]) into a raw frame cache on
/// disk, then read frame by frame at random. Files that cannot be decoded are skipped and
/// counted, or fail the open in strict mode.
#[derive(Debug)]
pub struct VideoFiles {
    videos: Vec<CachedVideo>,
    starts: Vec<usize>,
    names: Vec<String>,
    shape: (usize, usize, usize),
    skipped: Vec<SkippedFile>,
}

#[derive(Debug)]
struct CachedVideo {
    path: Arc<Path>,
    cache: File,
    cache_path: PathBuf,
}

const CACHE_MAGIC: &[u8; 8] = b"CTRFRM01";
const CACHE_HEADER: usize = 8 + 12;

impl VideoFiles {
    /// Opens every video file in `root` (sorted by name), decoding each into `cache_dir`
    /// unless a cache for the same file and options is already there. `options.size` is
    /// required, so every frame has one shape.
    pub fn open(
        root: impl AsRef<Path>,
        options: FrameOptions,
        cache_dir: impl AsRef<Path>,
        strict: bool,
    ) -> Result<Self> {
        let root = root.as_ref();
        let cache_dir = cache_dir.as_ref();
        options.validate()?;
        let (height, width) = options
            .size
            .ok_or_else(|| Error::InvalidOption("VideoFiles needs FrameOptions::size".into()))?;
        let shape = (height as usize, width as usize, options.channels.count());
        fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
        let mut paths: Vec<PathBuf> = fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_video_file(p))
            .collect();
        paths.sort_by(|a, b| crate::natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));

        let (mut videos, mut names, mut skipped, mut starts) =
            (Vec::new(), Vec::new(), Vec::new(), vec![0]);
        for path in paths {
            match cache_video(&path, &options, shape, cache_dir) {
                Ok((cache_path, frames)) => {
                    let cache = File::open(&cache_path).map_err(|e| Error::io(&cache_path, e))?;
                    starts.push(starts.last().copied().unwrap_or(0) + frames);
                    names.push(
                        path.file_stem()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                    );
                    videos.push(CachedVideo {
                        path: path.as_path().into(),
                        cache,
                        cache_path,
                    });
                }
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::warn!("skipped {}: {e}", path.display());
                    skipped.push(SkippedFile {
                        path,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if videos.is_empty() {
            return Err(Error::Empty {
                path: root.to_path_buf(),
                what: "videos",
            });
        }
        Ok(Self {
            videos,
            starts,
            names,
            shape,
            skipped,
        })
    }

    /// Number of frames of each video.
    pub fn frame_counts(&self) -> Vec<usize> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Video files that could not be decoded.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }
}

impl Dataset for VideoFiles {
    fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.len())?;
        let video = self.starts.partition_point(|&s| s <= index) - 1;
        let frame = index - self.starts[video];
        let (h, w, c) = self.shape;
        let mut bytes = vec![0u8; h * w * c];
        let v = &self.videos[video];
        let offset = (CACHE_HEADER + frame * bytes.len()) as u64;
        crate::stl10::read_at(&v.cache, &mut bytes, offset)
            .map_err(|e| Error::io(&v.cache_path, e))?;
        Ok(Sample {
            image: Image::from_shape_vec(self.shape, bytes)
                .expect("frame length matches its shape"),
            label: Some(video),
            source: Source::Frame {
                video,
                frame,
                path: v.path.clone(),
            },
        })
    }

    fn class_names(&self) -> &[String] {
        &self.names
    }
}

/// Decodes `path` into `cache_dir/<key>.frames` (atomically) unless it is there already;
/// returns the cache file and its frame count.
fn cache_video(
    path: &Path,
    options: &FrameOptions,
    shape: (usize, usize, usize),
    cache_dir: &Path,
) -> Result<(PathBuf, usize)> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut key = DefaultHasher::new();
    fs::canonicalize(path)
        .map_err(|e| Error::io(path, e))?
        .hash(&mut key);
    meta.len().hash(&mut key);
    meta.modified().ok().hash(&mut key);
    options.fps.map(f64::to_bits).hash(&mut key);
    options.size.hash(&mut key);
    options.channels.hash(&mut key);
    let cache_path = cache_dir.join(format!("{:016x}.frames", key.finish()));
    let frame_len = shape.0 * shape.1 * shape.2;
    if let Ok(existing) = fs::metadata(&cache_path) {
        let len = existing.len() as usize;
        if len > CACHE_HEADER && (len - CACHE_HEADER).is_multiple_of(frame_len) {
            return Ok((cache_path.clone(), (len - CACHE_HEADER) / frame_len));
        }
    }
    let temp = cache_path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        let mut out = BufWriter::new(file);
        let io = |e| Error::io(&temp, e);
        out.write_all(CACHE_MAGIC).map_err(io)?;
        for dim in [shape.0, shape.1, shape.2] {
            out.write_all(&(dim as u32).to_le_bytes()).map_err(io)?;
        }
        let mut frames = 0;
        for frame in FrameReader::open(path, options)? {
            out.write_all(frame?.as_slice().expect("frames are contiguous"))
                .map_err(io)?;
            frames += 1;
        }
        out.flush().map_err(io)?;
        fs::rename(&temp, &cache_path).map_err(|e| Error::io(&cache_path, e))?;
        Ok((cache_path.clone(), frames))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
