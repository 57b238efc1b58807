//! Named tensors saved as `.safetensors` files, the format PyTorch, JAX and Hugging Face
//! read, written atomically so an interrupted save never damages the previous file.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
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
        let metadata = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(Self {
            path,
            tensors,
            metadata,
        })
    }

    /// Copies the file's tensors into `targets` (name -> tensor), strictly: every target must
    /// be in the file with the same shape, and the file may hold nothing else. Values are
    /// converted to each target's kind and device. Nothing is copied unless all checks pass.
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
    let info: HashMap<String, String> = metadata.clone().into_iter().collect();
    let encoded =
        safetensors::serialize(views, Some(info)).map_err(|e| Error::InvalidCheckpoint {
            path: target.clone(),
            message: e.to_string(),
        })?;

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
    file.write_all(&encoded)
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
