//! The embedding store: vectors with their item ids and the identity of the model that made
//! them, saved as `.safetensors` (readable from Python) and exportable as `.npy`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use contrastive_tensor::{Device, Kind, SafetensorsFile, Tensor, save_safetensors};
use serde::{Deserialize, Serialize};

use crate::error::{check_finite, invalid};
use crate::item::Item;
use crate::search::{Metric, Neighbours, search_finite_database};
use crate::{Error, Result};

/// How a query image must be prepared to be comparable with the store: what the model saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square images the model was fed.
    pub size: usize,
    /// Channels of those images.
    pub channels: usize,
    /// Per-channel normalisation mean.
    pub mean: Vec<f32>,
    /// Per-channel normalisation deviation.
    pub std: Vec<f32>,
}

/// What describes a store besides its vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The model's identity (the SHA-256 of its weights file).
    pub model: String,
    /// One id per vector (a file path, or `dataset:split:index`).
    pub ids: Vec<String>,
    /// How query images are prepared.
    pub preprocess: Preprocess,
    /// For a store of video frames: its videos in row order, each one's frames consecutive
    /// rows (`None` for a store of images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub videos: Option<Vec<StoredVideo>>,
    /// One label per vector (`None` where unknown), when the items have labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Option<String>>>,
    /// One content hash per vector ([`Item::content`]; `None` where unknown), when known:
    /// a collection over the store skips an image whose content it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<Option<String>>>,
}

/// A video whose frames a store holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVideo {
    /// The video file (or folder of frame images).
    pub path: std::path::PathBuf,
    /// Its name (the file stem).
    pub name: String,
    /// What its frames were made from (file sizes and times, decoding settings): a video
    /// whose fingerprint changed is embedded again.
    pub fingerprint: String,
    /// Its frames in the store.
    pub frames: usize,
    /// Frames per second of those frames, when known.
    pub fps: Option<f64>,
}

/// Embeddings `[N, D]` (`f32`, CPU) of items, made by one model.
#[derive(Debug)]
pub struct EmbeddingStore {
    embeddings: Tensor,
    info: StoreInfo,
}

const INFO_KEY: &str = "contrastive.store";
const TENSOR: &str = "embeddings";

impl EmbeddingStore {
    /// A store of `embeddings` `[N, D]` with one id per row; a row holding NaN or infinity
    /// is an [`Error::NonFinite`] naming it.
    pub fn new(embeddings: &Tensor, info: StoreInfo) -> Result<Self> {
        let size = embeddings.size();
        if size.len() != 2 || size[0] as usize != info.ids.len() {
            return Err(Error::Shape {
                op: "embedding store",
                message: format!("{size:?} embeddings for {} ids", info.ids.len()),
            });
        }
        for (what, column) in [("labels", &info.labels), ("content hashes", &info.contents)] {
            if let Some(values) = column
                && values.len() != info.ids.len()
            {
                return Err(Error::Shape {
                    op: "embedding store",
                    message: format!("{} {what} for {} ids", values.len(), info.ids.len()),
                });
            }
        }
        check_finite("store embeddings", embeddings)?;
        Ok(Self {
            embeddings: embeddings.to_kind(Kind::Float).to_device(Device::Cpu),
            info,
        })
    }

    /// Vectors in the store.
    pub fn len(&self) -> usize {
        self.info.ids.len()
    }

    /// Whether the store holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.info.ids.is_empty()
    }

    /// Width of the vectors.
    pub fn dim(&self) -> i64 {
        self.embeddings.size()[1]
    }

    /// The embeddings `[N, D]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    /// Ids, model identity and preprocessing.
    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// Adds rows made by the same model (`model` must equal the store's identity); rows
    /// holding NaN or infinity are refused, and then nothing is added.
    pub fn add(&mut self, embeddings: &Tensor, ids: Vec<String>, model: &str) -> Result<()> {
        let items: Vec<Item> = ids.into_iter().map(Item::new).collect();
        self.add_items(embeddings, &items, model)
    }

    /// [`EmbeddingStore::add`] with the items' ids, labels and content hashes (their sources
    /// are not kept: a store's items are read from their ids).
    pub fn add_items(&mut self, embeddings: &Tensor, items: &[Item], model: &str) -> Result<()> {
        self.check_model(model)?;
        let size = embeddings.size();
        if size.len() != 2 || size[1] != self.dim() || size[0] as usize != items.len() {
            return Err(Error::Shape {
                op: "embedding store",
                message: format!(
                    "cannot add {size:?} embeddings with {} ids to a {}-wide store",
                    items.len(),
                    self.dim()
                ),
            });
        }
        check_finite("added embeddings", embeddings)?;
        let rows = embeddings.to_kind(Kind::Float).to_device(Device::Cpu);
        self.embeddings = Tensor::cat(&[&self.embeddings, &rows], 0);
        let held = self.info.ids.len();
        extend_column(
            &mut self.info.labels,
            held,
            items.iter().map(|i| i.label.clone()),
        );
        extend_column(
            &mut self.info.contents,
            held,
            items.iter().map(|i| i.content.clone()),
        );
        self.info.ids.extend(items.iter().map(|i| i.id.clone()));
        Ok(())
    }

    /// Keeps only the rows `keep` (in that order), their ids, labels and content hashes with
    /// them.
    pub fn retain_rows(&mut self, keep: &[i64]) -> Result<()> {
        if let Some(&bad) = keep.iter().find(|&&r| r < 0 || r as usize >= self.len()) {
            return Err(invalid(
                "rows",
                format!("row {bad} is not in a store of {}", self.len()),
            ));
        }
        self.embeddings = self
            .embeddings
            .f_index_select(0, &Tensor::from_slice(keep))?;
        self.info.ids = keep
            .iter()
            .map(|&r| self.info.ids[r as usize].clone())
            .collect();
        for column in [&mut self.info.labels, &mut self.info.contents] {
            if let Some(values) = column.as_mut() {
                *values = keep.iter().map(|&r| values[r as usize].clone()).collect();
            }
        }
        Ok(())
    }

    /// An error unless `model` is the identity of the model that made this store.
    pub fn check_model(&self, model: &str) -> Result<()> {
        if model == self.info.model {
            Ok(())
        } else {
            Err(Error::Invalid {
                field: "model",
                message: format!(
                    "the store was made by model {}, not by {model}; embed again with this model",
                    short(&self.info.model)
                ),
            })
        }
    }

    /// The `k` nearest stored items of each query row (see [`search`]); `k` beyond the store
    /// is clamped, an empty store is an error.
    pub fn search(&self, queries: &Tensor, k: usize, metric: Metric) -> Result<Neighbours> {
        if queries.dim() == 2 && queries.size()[1] != self.dim() {
            return Err(Error::Shape {
                op: "store search",
                message: format!(
                    "queries are {}-wide, the store holds {}-wide vectors (another model?)",
                    queries.size()[1],
                    self.dim()
                ),
            });
        }
        search_finite_database(&self.embeddings, queries, k, metric)
    }

    /// Writes the store to `path` atomically: tensor `embeddings` and the [`StoreInfo`] as
    /// JSON metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let metadata = BTreeMap::from([(
            INFO_KEY.to_owned(),
            serde_json::to_string(&self.info).expect("store info is plain data"),
        )]);
        Ok(save_safetensors(
            path,
            &[(TENSOR, &self.embeddings)],
            &metadata,
        )?)
    }

    /// Opens a store written by [`EmbeddingStore::save`], memory-mapped: opening takes no
    /// time whatever the size, the vectors are read from disk as searches touch them, and
    /// the operating system may drop them again under memory pressure (a store larger than
    /// memory still searches). [`EmbeddingStore::add`] copies into memory.
    pub fn load(path: &Path) -> Result<Self> {
        let mut file = SafetensorsFile::map(path)?;
        let not_a_store = |why: &str| Error::Invalid {
            field: "store",
            message: format!("{} is not an embedding store: {why}", path.display()),
        };
        let info: StoreInfo = file
            .metadata
            .get(INFO_KEY)
            .ok_or_else(|| not_a_store("no store metadata"))
            .and_then(|t| serde_json::from_str(t).map_err(|e| not_a_store(&e.to_string())))?;
        if !file.tensors.contains_key(TENSOR) {
            return Err(not_a_store("no `embeddings` tensor"));
        }
        // F32 exactly (a header edited to another dtype of the same size is refused, not
        // reinterpreted), and finite.
        let embeddings = file.take(TENSOR, Kind::Float)?;
        if let Some(videos) = &info.videos {
            let frames: usize = videos.iter().map(|v| v.frames).sum();
            if frames != info.ids.len() {
                return Err(not_a_store(&format!(
                    "its videos have {frames} frames in all, but it holds {} rows",
                    info.ids.len()
                )));
            }
        }
        Self::new(&embeddings, info)
    }

    /// Writes the embeddings as a NumPy `.npy` file (`float32`, C order) for Python.
    pub fn export_npy(&self, path: &Path) -> Result<()> {
        let [n, d] = [self.embeddings.size()[0], self.embeddings.size()[1]];
        let values = Vec::<f32>::try_from(&self.embeddings.flatten(0, -1))?;
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
        // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
        let used = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - used % 64) % 64));
        header.push('\n');
        let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
        bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let io = |e: std::io::Error| Error::Invalid {
            field: "path",
            message: format!("{}: {e}", path.display()),
        };
        let mut file = std::fs::File::create(path).map_err(io)?;
        file.write_all(&bytes).map_err(io)
    }
}

pub(crate) fn short(identity: &str) -> &str {
    &identity[..identity.len().min(12)]
}

/// Appends `values` to an optional per-row column of `held` rows: the column comes into
/// being (`None` for the rows before) when a first value is known.
fn extend_column(
    column: &mut Option<Vec<Option<String>>>,
    held: usize,
    values: impl Iterator<Item = Option<String>>,
) {
    let values: Vec<Option<String>> = values.collect();
    if column.is_some() || values.iter().any(Option::is_some) {
        column
            .get_or_insert_with(|| vec![None; held])
            .extend(values);
    }
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::seeded;

    use super::*;

    fn info(n: usize) -> StoreInfo {
        StoreInfo {
            model: "abc123".into(),
            ids: (0..n).map(|i| format!("item{i}")).collect(),
            preprocess: Preprocess {
                size: 28,
                channels: 1,
                mean: vec![0.5],
                std: vec![0.25],
            },
            videos: None,
            labels: None,
            contents: None,
        }
    }

    #[test]
    fn a_store_round_trips_grows_and_searches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.safetensors");
        let x = seeded(14, || Tensor::randn([10, 4], (Kind::Float, Device::Cpu)));
        let mut store = EmbeddingStore::new(&x, info(10)).unwrap();
        store
            .add(&x.narrow(0, 0, 2), vec!["a".into(), "b".into()], "abc123")
            .unwrap();
        assert_eq!(store.len(), 12);
        store.save(&path).unwrap();
        let back = EmbeddingStore::load(&path).unwrap();
        assert_eq!(back.info(), store.info());
        assert!(back.embeddings().equal(store.embeddings()));
        let found = back.search(&x.narrow(0, 3, 1), 1, Metric::Cosine).unwrap();
        assert_eq!(found.indices.int64_value(&[0, 0]), 3);
    }

    #[test]
    fn another_model_or_width_is_refused() {
        let x = seeded(15, || Tensor::randn([3, 4], (Kind::Float, Device::Cpu)));
        let mut store = EmbeddingStore::new(&x, info(3)).unwrap();
        let err = store.add(&x, vec!["a".into(); 3], "other").unwrap_err();
        assert!(err.to_string().contains("abc123"), "{err}");
        let wide = seeded(16, || Tensor::randn([1, 5], (Kind::Float, Device::Cpu)));
        let err = store.search(&wide, 1, Metric::L2).unwrap_err();
        assert!(err.to_string().contains("5-wide"), "{err}");
        assert!(EmbeddingStore::new(&x, info(2)).is_err());
    }

    #[test]
    fn npy_export_has_numpys_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([3, 2]);
        EmbeddingStore::new(&x, info(3))
            .unwrap()
            .export_npy(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "the data starts 64-byte aligned");
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (3, 2)"), "{header}");
        let data = &bytes[10 + header_len..];
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 6.0);
    }
}
