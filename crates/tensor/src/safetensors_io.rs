//! Named tensors saved as `.safetensors` files, the format PyTorch, JAX and Hugging Face
//! read, written atomically so an interrupted save never damages the previous file.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor, nn::VarStore};

use crate::{Error, Result};

/// The tensors and string metadata of one `.safetensors` file.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// The file they were read from (used in error messages).
    pub path: PathBuf,
    /// Tensors by name, on the CPU.
    pub tensors: BTreeMap<String, Tensor>,
    /// The file's `__metadata__` map (empty when it has none).
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Reads a whole `.safetensors` file into memory (the tensors own their data). A
    /// truncated or corrupt file, or a dtype libtorch cannot hold, is an
    /// [`Error::InvalidCheckpoint`] naming the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let mut file = Self::map(path)?;
        for tensor in file.tensors.values_mut() {
            *tensor = tensor.copy();
        }
        Ok(file)
    }

    /// Opens a `.safetensors` file with its tensors as views of the file mapped into memory
    /// (libtorch's `from_file`, a private copy-on-write mapping): opening is immediate
    /// whatever the size, pages are read when first touched, and the operating system may
    /// drop them again under memory pressure. A tensor whose data is not aligned
    /// for its kind is copied instead. The file must not be truncated while the tensors
    /// live (our writers replace files by renaming, which is safe).
    pub fn map(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let invalid = |message: String| Error::InvalidCheckpoint {
            path: path.clone(),
            message,
        };
        let len = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len() as usize;
        if len < 8 {
            return Err(invalid(format!("{len} bytes is too short for a header")));
        }
        let name = path
            .to_str()
            .ok_or_else(|| invalid("the path is not UTF-8".into()))?;
        let bytes = Tensor::f_from_file(name, false, len as i64, (Kind::Uint8, Device::Cpu))?;
        // SAFETY: `bytes` is a contiguous u8 CPU tensor of `len` elements mapping the file;
        // it outlives `buffer`, which is only read during this call.
        let buffer = unsafe { std::slice::from_raw_parts(bytes.data_ptr() as *const u8, len) };
        let (header_len, header) =
            SafeTensors::read_metadata(buffer).map_err(|e| invalid(e.to_string()))?;
        let data_start = 8 + header_len;
        let mut metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(expected) = metadata.remove(DIGEST_KEY) {
            let tensors = header.tensors();
            let parts = tensors.iter().map(|(name, info)| {
                let (begin, end) = info.data_offsets;
                let shape = info.shape.iter().map(|&d| d as i64).collect();
                let data = &buffer[data_start + begin..data_start + end];
                (name.as_str(), info.dtype, shape, data)
            });
            if digest(parts, &metadata) != expected {
                return Err(invalid(format!(
                    "its content does not match the SHA-256 recorded when it was written \
                     ({DIGEST_KEY}): the file is damaged"
                )));
            }
        } else if let Some(ours) = metadata.keys().find(|k| k.starts_with(OUR_PREFIX)) {
            // Our writers always record the SHA-256; without it, a damaged key name could
            // hide a damaged value.
            return Err(invalid(format!(
                "it holds our metadata ({ours}) but no {DIGEST_KEY}: the file is damaged, or \
                 was written by a version before checksums (write it again)"
            )));
        }
        let mut tensors = BTreeMap::new();
        for (name, info) in header.tensors() {
            let kind = kind_of(info.dtype).ok_or_else(|| {
                invalid(format!(
                    "tensor {name:?} has unsupported dtype {:?}",
                    info.dtype
                ))
            })?;
            let (begin, end) = info.data_offsets;
            let raw = bytes.narrow(0, (data_start + begin) as i64, (end - begin) as i64);
            let raw = if (data_start + begin) % kind.elt_size_in_bytes() == 0 {
                raw
            } else {
                raw.copy()
            };
            let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
            tensors.insert(name, raw.f_view_dtype(kind)?.f_view(shape.as_slice())?);
        }
        Ok(Self {
            path,
            tensors,
            metadata,
        })
    }

    /// Removes and returns the tensor `name`, which must be in the file with element type
    /// `kind` and, for floating-point kinds, hold only finite values.
    pub fn take(&mut self, name: &str, kind: Kind) -> Result<Tensor> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensors {
                path: self.path.clone(),
                names: vec![name.to_owned()],
            })?;
        check_tensor(&self.path, name, &tensor, kind)?;
        Ok(tensor)
    }

    /// Copies the file's tensors into `targets` (name -> tensor), strictly: every target must
    /// be in the file with the same shape and element type, the file may hold nothing else,
    /// and floating-point values must be finite (a poisoned checkpoint is refused with the
    /// tensor named). Values move to each target's device. Nothing is copied unless all
    /// checks pass.
    pub fn copy_into(&self, targets: &HashMap<String, Tensor>) -> Result<()> {
        let mut missing: Vec<String> = targets
            .keys()
            .filter(|k| !self.tensors.contains_key(*k))
            .cloned()
            .collect();
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::MissingTensors {
                path: self.path.clone(),
                names: missing,
            });
        }
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !targets.contains_key(*k))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            return Err(Error::UnexpectedTensors {
                path: self.path.clone(),
                names: unexpected,
            });
        }
        let mut names: Vec<&String> = targets.keys().collect();
        names.sort();
        for name in &names {
            let (found, expected) = (self.tensors[*name].size(), targets[*name].size());
            if found != expected {
                return Err(Error::TensorShapeMismatch {
                    path: self.path.clone(),
                    name: (*name).clone(),
                    found,
                    expected,
                });
            }
            check_tensor(
                &self.path,
                name,
                &self.tensors[*name],
                targets[*name].kind(),
            )?;
        }
        tch::no_grad(|| -> Result<()> {
            for name in names {
                let mut target = targets[name].shallow_clone();
                target.f_copy_(&self.tensors[name])?;
            }
            Ok(())
        })
    }
}

/// Checks that `tensor` (called `name` in `path`) has element type `kind` and, when that
/// is a floating-point kind, only finite values.
fn check_tensor(path: &Path, name: &str, tensor: &Tensor, kind: Kind) -> Result<()> {
    if tensor.kind() != kind {
        return Err(Error::TensorKindMismatch {
            path: path.to_path_buf(),
            name: name.to_owned(),
            found: tensor.kind(),
            expected: kind,
        });
    }
    match non_finite_count(tensor)? {
        0 => Ok(()),
        count => Err(Error::NonFiniteTensor {
            path: path.to_path_buf(),
            name: name.to_owned(),
            count,
        }),
    }
}

/// How many values of `tensor` are NaN or infinite (always 0 for integer and bool kinds).
///
/// ```
/// use contrastive_tensor::{Tensor, non_finite_count};
/// let t = Tensor::from_slice(&[1.0f32, f32::NAN, f32::INFINITY, -2.0]);
/// assert_eq!(non_finite_count(&t)?, 2);
/// # Ok::<(), contrastive_tensor::Error>(())
/// ```
pub fn non_finite_count(tensor: &Tensor) -> Result<i64> {
    if !tensor.is_floating_point() || tensor.numel() == 0 {
        return Ok(0);
    }
    Ok(tensor
        .f_isfinite()?
        .logical_not()
        .sum(Kind::Int64)
        .int64_value(&[]))
}

/// The name of the first tensor of `tensors` (in the order given) holding NaN or infinity,
/// with its count of such values; `None` when all are finite.
pub fn first_non_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<Option<(String, i64)>> {
    for (name, tensor) in tensors {
        let count = non_finite_count(tensor)?;
        if count > 0 {
            return Ok(Some((name.to_owned(), count)));
        }
    }
    Ok(None)
}

/// Loads a checkpoint into every variable of `vs` (parameters and buffers), strictly: see
/// [`SafetensorsFile::copy_into`].
pub fn load_var_store(vs: &VarStore, path: impl AsRef<Path>) -> Result<()> {
    SafetensorsFile::read(path)?.copy_into(&vs.variables())
}

/// Saves every variable of `vs` (parameters and buffers) under its `state_dict` name.
pub fn save_var_store(
    vs: &VarStore,
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let variables = vs.variables();
    let named: Vec<(&str, &Tensor)> = variables.iter().map(|(k, v)| (k.as_str(), v)).collect();
    save_safetensors(path, &named, metadata)
}

/// Writes named tensors (any device, kind and layout) and string metadata to `path`,
/// atomically: the bytes go to a temporary file beside it, are flushed to disk, and only
/// then replace `path` by a rename. A crash at any point leaves the old file or the new one.
///
/// ```
/// use std::collections::BTreeMap;
/// use contrastive_tensor::{SafetensorsFile, Tensor, save_safetensors};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("weights.safetensors");
/// let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
/// save_safetensors(&path, &[("fc.weight", &w)], &BTreeMap::new()).unwrap();
/// let back = SafetensorsFile::read(&path).unwrap();
/// assert!(back.tensors["fc.weight"].equal(&w));
/// ```
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    stage_safetensors(path, tensors, metadata)?.commit()
}

/// First half of [`save_safetensors`]: writes and syncs the temporary file, leaving `path`
/// untouched until [`StagedFile::commit`]. Dropping the stage without committing removes
/// the temporary file.
pub fn stage_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<StagedFile> {
    let target = path.as_ref().to_path_buf();
    let cpu: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(name, t)| (*name, t.to_device(Device::Cpu).contiguous()))
        .collect();
    let mut bytes = Vec::with_capacity(cpu.len());
    for (name, t) in &cpu {
        let dtype = dtype_of(t.kind()).ok_or_else(|| Error::InvalidCheckpoint {
            path: target.clone(),
            message: format!(
                "tensor {name:?} has kind {:?}, which safetensors cannot store",
                t.kind()
            ),
        })?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        bytes.push((dtype, data));
    }
    let views = cpu
        .iter()
        .zip(&bytes)
        .map(|((name, t), (dtype, data))| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            TensorView::new(*dtype, shape, data).map(|view| (*name, view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidCheckpoint {
            path: target.clone(),
            message: e.to_string(),
        })?;
    let mut info: HashMap<String, String> = metadata.clone().into_iter().collect();
    let parts = cpu
        .iter()
        .zip(&bytes)
        .map(|((name, t), (dtype, data))| (*name, *dtype, t.size(), data.as_slice()));
    info.insert(DIGEST_KEY.to_owned(), digest(parts, metadata));
    let encoded =
        safetensors::serialize(views, Some(info)).map_err(|e| Error::InvalidCheckpoint {
            path: target.clone(),
            message: e.to_string(),
        })?;

    stage_bytes(target, &canonical_header(encoded))
}

/// `encoded` with its JSON header's keys in sorted order (safetensors writes the metadata
/// map in hash order, which differs between runs), so the same content always gives the
/// same bytes. The header keeps its length: the same entries, reordered.
fn canonical_header(mut encoded: Vec<u8>) -> Vec<u8> {
    let Some(len) = encoded
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
    else {
        return encoded;
    };
    let Some(header) = encoded.get(8..8 + len as usize) else {
        return encoded;
    };
    let json_len = header.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    type Header = BTreeMap<String, serde_json::Value>;
    let sorted = serde_json::from_slice::<Header>(&header[..json_len]).and_then(|mut top| {
        if let Some(meta) = top.remove("__metadata__") {
            let meta: BTreeMap<String, String> = serde_json::from_value(meta)?;
            top.insert("__metadata__".into(), serde_json::to_value(meta)?);
        }
        serde_json::to_vec(&top)
    });
    // Always the same length; if it were not, the file stays as safetensors wrote it.
    if let Some(sorted) = sorted.ok().filter(|s| s.len() == json_len) {
        encoded[8..8 + json_len].copy_from_slice(&sorted);
    }
    encoded
}

/// Writes `bytes` to `path` atomically, as [`save_safetensors`] does: a temporary file
/// beside it, synced, then renamed over it. A reader (or a kill at any moment) sees the old
/// file or the new one, never a truncated one.
///
/// ```
/// use contrastive_tensor::write_atomically;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("config.toml");
/// write_atomically(&path, b"[run]\nepochs = 3\n")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"[run]\nepochs = 3\n");
/// # Ok::<(), contrastive_tensor::Error>(())
/// ```
pub fn write_atomically(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    stage_bytes(path.as_ref().to_path_buf(), bytes)?.commit()
}

/// Writes and syncs `bytes` to a new temporary file beside `target`.
fn stage_bytes(target: PathBuf, bytes: &[u8]) -> Result<StagedFile> {
    let temp = temp_path_for(&target);
    // From here on, dropping `stage` (on any error) removes the temporary file.
    let stage = StagedFile {
        temp: Some(temp.clone()),
        target,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| Error::io(&temp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&temp, e))?;
    Ok(stage)
}

/// A fully written temporary file waiting to replace its target.
#[derive(Debug)]
pub struct StagedFile {
    temp: Option<PathBuf>,
    target: PathBuf,
}

impl StagedFile {
    /// The temporary file's path (beside the target, named `.<target>.tmp-<pid>-<n>`).
    pub fn temp_path(&self) -> &Path {
        self.temp
            .as_deref()
            .expect("a staged file keeps its temporary path until commit")
    }

    /// Replaces the target with the staged file (an atomic rename) and syncs the folder so
    /// the rename itself survives a power loss.
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("commit runs once");
        fs::rename(&temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Folders cannot be opened for syncing everywhere; the rename is done either way.
            if let Ok(handle) = File::open(dir) {
                let _ = handle.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Metadata key of the SHA-256 that [`save_safetensors`] records of everything else in the
/// file (each tensor's name, dtype, shape and bytes, and the other metadata), and that
/// reading checks: a flipped bit or an edited header anywhere is an error, never a silently
/// different value. Files without it are read unchecked when they come from other tools
/// (no `contrastive.` metadata) and refused otherwise.
pub const DIGEST_KEY: &str = "contrastive.sha256";

/// The prefix of every metadata key our writers use.
const OUR_PREFIX: &str = "contrastive.";

/// The hex SHA-256 of `tensors` (name, dtype, shape, bytes; in any order) and `metadata`,
/// each field length-prefixed so that no two different contents hash the same stream.
fn digest<'a>(
    tensors: impl Iterator<Item = (&'a str, Dtype, Vec<i64>, &'a [u8])>,
    metadata: &BTreeMap<String, String>,
) -> String {
    let mut tensors: Vec<_> = tensors.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (name, dtype, shape, data) in &tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}").as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|d| d.to_le_bytes()).collect();
        field(&dims);
        field(data);
    }
    for (key, value) in metadata.iter().filter(|(k, _)| *k != DIGEST_KEY) {
        field(key.as_bytes());
        field(value.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn temp_path_for(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}
