//! An [`HnswIndex`] on disk: one `.safetensors` file holding the rows (`vectors`, f32
//! `[N, D]`), each node's layer (`levels`, u8 `[N]`), the layer-0 lists (`layer0`, i32
//! `[N, 2m + 1]`, count first) and the upper lists (`upper`, i32, in node order), with the
//! parameters, entry node and label as JSON metadata.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

use contrastive_tensor::{SafetensorsFile, Tensor, save_safetensors};
use serde::{Deserialize, Serialize};

use super::graph::Graph;
use super::{HnswConfig, HnswIndex, distance};
use crate::search::Metric;
use crate::{Error, Result};

const META_KEY: &str = "contrastive.hnsw";
/// Bumped when the layout changes, so an old file is refused instead of misread.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    config: HnswConfig,
    dim: usize,
    entry: Option<(u32, u8)>,
    label: String,
}

fn to_i32(slots: &[AtomicU32]) -> Tensor {
    let values: Vec<i32> = slots.iter().map(|s| s.load(Relaxed) as i32).collect();
    Tensor::from_slice(&values)
}

fn to_slots(tensor: &Tensor) -> Result<Vec<AtomicU32>> {
    let values = Vec::<i32>::try_from(&tensor.flatten(0, -1))?;
    Ok(values
        .into_iter()
        .map(|v| AtomicU32::new(v as u32))
        .collect())
}

impl HnswIndex {
    /// Writes the index to `path` atomically (a crash leaves any previous file whole).
    pub fn save(&self, path: &Path) -> Result<()> {
        let g = &self.graph;
        let meta = Meta {
            format: FORMAT,
            config: self.config,
            dim: g.dim,
            entry: *g.entry.read().expect("the entry lock is never poisoned"),
            label: self.label.clone(),
        };
        let metadata = BTreeMap::from([(
            META_KEY.to_owned(),
            serde_json::to_string(&meta).expect("index metadata is plain data"),
        )]);
        let n = g.len() as i64;
        let vectors = Tensor::from_slice(&g.vectors).view([n, g.dim as i64]);
        let levels = Tensor::from_slice(&g.levels);
        let layer0 = to_i32(&g.layer0).view([n, g.m0 as i64 + 1]);
        let upper = to_i32(&g.upper);
        Ok(save_safetensors(
            path,
            &[
                ("vectors", &vectors),
                ("levels", &levels),
                ("layer0", &layer0),
                ("upper", &upper),
            ],
            &metadata,
        )?)
    }

    /// Reads an index written by [`HnswIndex::save`]; anything else (another format, a
    /// damaged or inconsistent file) is an error naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let mut file = SafetensorsFile::map(path)?;
        let bad = |why: String| Error::Invalid {
            field: "index",
            message: format!("{} is not a usable HNSW index: {why}", path.display()),
        };
        let meta: Meta = file
            .metadata
            .get(META_KEY)
            .ok_or_else(|| bad("no HNSW metadata".into()))
            .and_then(|t| serde_json::from_str(t).map_err(|e| bad(e.to_string())))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {FORMAT})",
                meta.format
            )));
        }
        meta.config.validate()?;
        let mut take = |name: &str| {
            file.tensors
                .remove(name)
                .ok_or_else(|| bad(format!("no `{name}` tensor")))
        };
        let (vectors, levels, layer0, upper) = (
            take("vectors")?,
            take("levels")?,
            take("layer0")?,
            take("upper")?,
        );
        let l2 = meta.config.metric == Metric::L2;
        let mut graph = Graph::new(meta.config.m, meta.dim, distance::kernel(l2));
        let levels = Vec::<u8>::try_from(&levels)?;
        let n = levels.len();
        graph.vectors = Vec::<f32>::try_from(&vectors.flatten(0, -1))?;
        graph.layer0 = to_slots(&layer0)?;
        graph.upper = to_slots(&upper)?;
        let mut start = 0;
        for &level in &levels {
            graph.upper_start.push(start);
            start += level as usize * (graph.m + 1);
        }
        graph.levels = levels;
        if graph.vectors.len() != n * meta.dim
            || graph.layer0.len() != n * (graph.m0 + 1)
            || graph.upper.len() != start
        {
            return Err(bad("its tensors disagree in size".into()));
        }
        let links_ok = |slots: &[AtomicU32], width: usize| {
            slots.chunks(width).all(|list| {
                let count = list[0].load(Relaxed) as usize;
                count < width
                    && list[1..=count]
                        .iter()
                        .all(|s| (s.load(Relaxed) as usize) < n)
            })
        };
        let entry_ok = match meta.entry {
            Some((node, level)) => (node as usize) < n && graph.levels[node as usize] == level,
            None => n == 0,
        };
        if !links_ok(&graph.layer0, graph.m0 + 1)
            || !links_ok(&graph.upper, graph.m + 1)
            || !entry_ok
        {
            return Err(bad("a link or the entry points outside the index".into()));
        }
        *graph.entry.write().expect("a fresh lock is not poisoned") = meta.entry;
        Ok(Self {
            config: meta.config,
            graph,
            label: meta.label,
        })
    }
}
