//! Folders of image files: one subfolder per class, or a flat (unlabeled) tree.
//!
//! Opening lists the files and reads only their headers; pictures are decoded on `get`, so a
//! folder of a million images opens in seconds and uses little memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{ImageFormat, ImageReader};
use rayon::prelude::*;

use crate::dataset::check_index;
use crate::image_io::{Channels, Resize, conform, read_image};
use crate::{Dataset, Error, Image, Result, Sample, Source};

/// How a folder's contents map to labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `Classes` when the folder has subfolders, else `Flat`.
    #[default]
    Auto,
    /// Each subfolder is a class (named after it, sorted); its images at any depth belong to
    /// it. Files directly in the root are ignored.
    Classes,
    /// Every image at any depth, unlabeled.
    Flat,
}

/// How to open an image folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderOptions {
    /// Channel count to bring images to.
    pub channels: Channels,
    /// Size to bring images to.
    pub resize: Resize,
    /// Classes or flat.
    pub layout: Layout,
    /// Fail on the first unreadable image instead of skipping it.
    pub strict: bool,
}

/// An image file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// A folder of image files, read lazily.
#[derive(Debug)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<(Arc<Path>, Option<u16>)>,
    class_names: Vec<String>,
    options: FolderOptions,
    skipped: Vec<SkippedFile>,
}

impl ImageFolder {
    /// Lists `root` and checks every image's header. Files whose header cannot be read are
    /// skipped with a warning (or, with `strict`, fail the open); a folder with no readable
    /// image is [`Error::Empty`].
    ///
    /// ```no_run
    /// use contrastive_data::{Channels, Dataset, FolderOptions, ImageFolder, Resize};
    /// let options = FolderOptions {
    ///     channels: Channels::Rgb,
    ///     resize: Resize::ShorterSideThenCenterCrop { size: 96 },
    ///     ..Default::default()
    /// };
    /// let photos = ImageFolder::open("photos/", options)?;
    /// println!("{}", photos.summary());
    /// let first = photos.get(0)?;
    /// assert_eq!(first.image.dim(), (96, 96, 3));
    /// # Ok::<(), contrastive_data::Error>(())
    /// ```
    pub fn open(root: impl AsRef<Path>, options: FolderOptions) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        options.resize.validate()?;
        let subfolders = sorted_entries(&root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect::<Vec<_>>();
        let classes = match options.layout {
            Layout::Classes => true,
            Layout::Flat => false,
            Layout::Auto => !subfolders.is_empty(),
        };
        let (candidates, class_names) = if classes {
            let mut candidates = Vec::new();
            let mut names = Vec::new();
            for (label, folder) in subfolders.iter().enumerate() {
                let label = u16::try_from(label).map_err(|_| {
                    Error::InvalidOption(format!("{}: more than 65535 classes", root.display()))
                })?;
                names.push(
                    folder
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                );
                candidates.extend(image_files(folder)?.into_iter().map(|f| (f, Some(label))));
            }
            (candidates, names)
        } else {
            (
                image_files(&root)?.into_iter().map(|f| (f, None)).collect(),
                Vec::new(),
            )
        };

        let checks: Vec<Option<String>> = candidates
            .par_iter()
            .map(|(path, _)| header_problem(path))
            .collect();
        let mut files = Vec::with_capacity(candidates.len());
        let mut skipped = Vec::new();
        for ((path, label), problem) in candidates.into_iter().zip(checks) {
            match problem {
                None => files.push((Arc::from(path.as_path()), label)),
                Some(reason) if options.strict => {
                    return Err(Error::Decode {
                        path,
                        message: reason,
                    });
                }
                Some(reason) => {
                    tracing::warn!("skipped {}: {reason}", path.display());
                    skipped.push(SkippedFile { path, reason });
                }
            }
        }
        if files.is_empty() {
            return Err(Error::Empty {
                path: root,
                what: "images",
            });
        }
        let folder = Self {
            root,
            files,
            class_names,
            options,
            skipped,
        };
        tracing::info!("{}", folder.summary());
        Ok(folder)
    }

    /// The files left out when opening, with the reason for each.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// One line: how many images, classes and skipped files.
    pub fn summary(&self) -> String {
        let classes = if self.class_names.is_empty() {
            "unlabeled".to_string()
        } else {
            format!("{} classes", self.class_names.len())
        };
        format!(
            "{}: {} images, {classes}, {} skipped",
            self.root.display(),
            self.files.len(),
            self.skipped.len()
        )
    }

    /// The path of item `index`.
    pub fn path(&self, index: usize) -> Result<&Path> {
        check_index(index, self.files.len())?;
        Ok(&self.files[index].0)
    }

    /// The label of item `index` (0 for unlabeled folders); `index` must be in range.
    pub(crate) fn label(&self, index: usize) -> usize {
        self.files[index].1.map_or(0, usize::from)
    }

    fn decode(&self, path: &Path) -> Result<Image> {
        let decoded = read_image(path)?;
        Ok(conform(decoded, self.options.channels, self.options.resize))
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.files.len())?;
        let (path, label) = &self.files[index];
        Ok(Sample {
            image: self.decode(path)?,
            label: label.map(usize::from),
            source: Source::File(path.clone()),
        })
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}

/// Entries of a folder, in natural name order.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort_by(|a, b| crate::natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(entries)
}

/// Files under `dir` (any depth, sorted, hidden entries skipped) whose extension names an
/// image format.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in sorted_entries(dir)? {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            found.extend(image_files(&path)?);
        } else if ImageFormat::from_path(&path).is_ok() {
            found.push(path);
        }
    }
    Ok(found)
}

/// Why the file's header cannot be read, or `None` when it can.
fn header_problem(path: &Path) -> Option<String> {
    let reader = match ImageReader::open(path).and_then(|r| r.with_guessed_format()) {
        Ok(reader) => reader,
        Err(e) => return Some(e.to_string()),
    };
    match reader.into_dimensions() {
        Ok((0, _)) | Ok((_, 0)) => Some("the image has zero width or height".into()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}
