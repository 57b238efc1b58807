//! The crate's error type: every variant names the file (or URL) and the problem.

use std::path::PathBuf;

/// Everything that can go wrong while reading or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip file that is truncated or corrupt.
    #[error("{}: corrupt or truncated gzip data: {message}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A file whose content does not follow its format (magic number, sizes, record length).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// An images file and a labels file of different lengths.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// How many images it holds.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// How many labels it holds.
        labels: usize,
    },
    /// An image file that cannot be decoded.
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A folder with no usable images (or videos) in it.
    #[error("{}: no {what} found", path.display())]
    Empty {
        /// The folder.
        path: PathBuf,
        /// What was looked for ("images", "videos", "frames").
        what: &'static str,
    },
    /// An index past the end of a dataset.
    #[error("index {index} is out of range for a dataset of {len} items")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// Options that cannot be used (zero sizes, a zero frame rate...).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The `ffmpeg` (or `ffprobe`) executable is not on PATH.
    #[error(
        "`{program}` was not found on PATH; install FFmpeg (Debian/Ubuntu: apt-get install ffmpeg)"
    )]
    FfmpegMissing {
        /// The executable looked for.
        program: &'static str,
    },
    /// A video that cannot be read (corrupt, zero-length, no video stream).
    #[error("{}: {message}", path.display())]
    Video {
        /// The video file.
        path: PathBuf,
        /// What went wrong (with ffmpeg's own message where there is one).
        message: String,
    },
    /// A dataset name the download catalog does not know.
    #[error("unknown dataset {0:?}; known: fashion-mnist, mnist, cifar10, cifar100, stl10")]
    UnknownDataset(String),
    /// A download whose bytes do not have the published SHA-256 (the file was deleted).
    #[error(
        "{url}: checksum mismatch (expected SHA-256 {expected}, got {actual}); the file was deleted"
    )]
    ChecksumMismatch {
        /// Where it came from.
        url: String,
        /// The published checksum.
        expected: String,
        /// The checksum of what arrived.
        actual: String,
    },
    /// A download that failed (HTTP status, connection error), after retries.
    #[error("{url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A downloaded dataset whose files no longer have the SHA-256 they had when the
    /// download completed (a damaged disk, an edited or deleted file).
    #[error(
        "the downloaded {name} in {} is damaged: {file} {why}; run `cargo xtask download \
         {name}` again (it fetches or unpacks again only what is damaged)",
        dir.display()
    )]
    DamagedCache {
        /// The dataset.
        name: String,
        /// Its folder.
        dir: PathBuf,
        /// The file that does not verify, relative to `dir`.
        file: String,
        /// `is missing`, or `does not have the SHA-256 it had`.
        why: String,
    },
    /// Every source of a file failed; each attempt's error is listed.
    #[error("could not fetch {file}:\n  {}", attempts.join("\n  "))]
    AllSourcesFailed {
        /// The file's name.
        file: String,
        /// One line per URL tried.
        attempts: Vec<String>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
