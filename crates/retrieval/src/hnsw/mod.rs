//! Approximate nearest-neighbour search with HNSW, for stores too large to scan for every
//! query.
//!
//! The index is our own implementation of Malkov & Yashunin (2018), written for this crate
//! rather than taken from `hnsw_rs` or `instant-distance`: it keeps the rows in one
//! contiguous `f32` array scored by an AVX2 + FMA kernel, builds on all cores with
//! deterministic levels, speaks this crate's [`Metric`] and [`Neighbours`], and persists as
//! `.safetensors` beside the embedding store (readable from Python, written atomically),
//! where those crates bring their own serialisation formats.
//!
//! Parameters, as in the paper and in faiss and hnswlib: `m` links per node on the upper
//! layers (`2m` on layer 0), `ef_construction` candidates while inserting, and `ef_search`
//! candidates while searching: larger values buy recall with time.

mod distance;
mod graph;
mod io;

use contrastive_tensor::{Kind, Tensor, no_grad, with_f32_slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{check_finite, invalid};
use crate::search::{Metric, Neighbours};
use crate::{Error, Result};

use graph::{Graph, Near, Visited};

/// How an [`HnswIndex`] is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HnswConfig {
    /// Links per node on the upper layers (layer 0 keeps twice as many); 2 to 128.
    pub m: usize,
    /// Candidates considered while inserting a node; at least `m`.
    pub ef_construction: usize,
    /// Candidates considered while searching (raised to `k` when smaller); at least 1.
    pub ef_search: usize,
    /// Seeds the layer of each node.
    pub seed: u64,
    /// How closeness is measured; cosine normalises rows and queries.
    pub metric: Metric,
}

impl Default for HnswConfig {
    /// `m` 16, `ef_construction` 100, `ef_search` 64, seed 0, cosine.
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            seed: 0,
            metric: Metric::Cosine,
        }
    }
}

impl HnswConfig {
    /// Sets `m`.
    pub fn with_m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// Sets `ef_construction`.
    pub fn with_ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }

    /// Sets `ef_search`.
    pub fn with_ef_search(mut self, ef: usize) -> Self {
        self.ef_search = ef;
        self
    }

    /// Sets the metric.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// An error naming the first value outside its range.
    pub fn validate(&self) -> Result<()> {
        if !(2..=128).contains(&self.m) {
            return Err(invalid("m", format!("{} is outside 2..=128", self.m)));
        }
        if self.ef_construction < self.m {
            return Err(invalid(
                "ef_construction",
                format!("{} is below m = {}", self.ef_construction, self.m),
            ));
        }
        if self.ef_search == 0 {
            return Err(invalid("ef_search", "must be at least 1"));
        }
        Ok(())
    }
}

/// A graph index over `[N, D]` rows. Build with [`HnswIndex::build`], grow with
/// [`HnswIndex::add`], query with [`HnswIndex::search`], keep with [`HnswIndex::save`].
///
/// ```
/// use contrastive_retrieval::{HnswConfig, HnswIndex, Metric, search};
/// use contrastive_tensor::{Device, Kind, Tensor};
/// let rows = Tensor::randn([2000, 16], (Kind::Float, Device::Cpu));
/// let index = HnswIndex::build(&rows, HnswConfig::default())?;
/// let queries = rows.narrow(0, 0, 5);
/// let found = index.search(&queries, 3)?;
/// // Each row finds itself first.
/// let exact = search(&rows, &queries, 3, Metric::Cosine)?;
/// assert!(found.indices.select(1, 0).equal(&exact.indices.select(1, 0)));
/// # Ok::<(), contrastive_retrieval::Error>(())
/// ```
pub struct HnswIndex {
    config: HnswConfig,
    graph: Graph,
    /// Free text saved with the index; the CLI keeps the store's model identity here.
    label: String,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("config", &self.config)
            .field("len", &self.len())
            .field("dim", &self.dim())
            .finish()
    }
}

impl HnswIndex {
    /// An index of the rows of `vectors` (`[N, D]`, any float kind), inserted on all of
    /// rayon's threads. With one thread the graph is the same for the same seed; with more,
    /// insertion order (and so the graph) depends on scheduling, as in hnswlib and faiss.
    pub fn build(vectors: &Tensor, config: HnswConfig) -> Result<Self> {
        config.validate()?;
        let size = vectors.size();
        if size.len() != 2 || size[1] == 0 {
            return Err(Error::Shape {
                op: "hnsw build",
                message: format!("expected rows [N, D] with D > 0, got {size:?}"),
            });
        }
        let l2 = config.metric == Metric::L2;
        let mut index = Self {
            config,
            graph: Graph::new(config.m, size[1] as usize, distance::kernel(l2)),
            label: String::new(),
        };
        index.add(vectors)?;
        Ok(index)
    }

    /// Inserts more rows; their indices continue after the existing ones.
    pub fn add(&mut self, vectors: &Tensor) -> Result<()> {
        let rows = self.rows_of(vectors, "hnsw add")?;
        let first = self.len();
        if first + rows.len() / self.dim() > u32::MAX as usize {
            return Err(invalid("rows", "an index holds at most 2^32 - 1 rows"));
        }
        let levels: Vec<u8> = (first..first + rows.len() / self.dim())
            .map(|node| level_of(self.config.seed, node as u64, self.config.m))
            .collect();
        self.graph.push(rows, &levels);
        let graph = &self.graph;
        let ef = self.config.ef_construction;
        let n = graph.len();
        (first..n).into_par_iter().for_each_init(
            || Visited::new(n),
            |visited, node| graph.insert(node as u32, ef, visited),
        );
        Ok(())
    }

    /// The `k` approximate nearest rows of each query `[M, D]`, best first, scored as
    /// [`crate::search`] scores them; `k` beyond the index is clamped. Queries run in
    /// parallel. A row with fewer than `k` reachable results is padded with index -1.
    pub fn search(&self, queries: &Tensor, k: usize) -> Result<Neighbours> {
        self.search_with(queries, k, self.config.ef_search)
    }

    /// [`HnswIndex::search`] with another `ef_search` (raised to `k` when smaller).
    pub fn search_with(&self, queries: &Tensor, k: usize, ef_search: usize) -> Result<Neighbours> {
        if self.is_empty() {
            return Err(Error::Shape {
                op: "hnsw search",
                message: "the index is empty".into(),
            });
        }
        if k == 0 {
            return Err(invalid("k", "must be at least 1"));
        }
        let rows = self.rows_of(queries, "hnsw search")?;
        let k = k.min(self.len());
        let ef = ef_search.max(k);
        let dim = self.dim();
        let found: Vec<Vec<(f32, i64)>> = rows
            .par_chunks(dim)
            .map_init(
                || Visited::new(self.len()),
                |visited, query| {
                    let near = self.query(query, ef, visited);
                    near.iter()
                        .take(k)
                        .map(|n| (self.score(n.distance), n.node as i64))
                        .collect()
                },
            )
            .collect();
        Ok(Neighbours::from_lists(&found, k))
    }

    /// Up to `ef` nodes near `query`, closest first.
    fn query(&self, query: &[f32], ef: usize, visited: &mut Visited) -> Vec<Near> {
        let graph = &self.graph;
        let (entry, top) = graph
            .entry
            .read()
            .expect("the entry lock is never poisoned")
            .expect("a non-empty index has an entry");
        let first = Near {
            distance: (graph.distance)(query, graph.row(entry)),
            node: entry,
        };
        let start = graph.descend(query, first, top as usize, 0);
        graph.search_layer(query, &[start], ef, 0, visited)
    }

    /// A distance as the exact search scores it: similarity, or Euclidean distance.
    fn score(&self, distance: f32) -> f32 {
        match self.config.metric {
            Metric::L2 => distance.max(0.0).sqrt(),
            _ => 1.0 - distance,
        }
    }

    /// `vectors` as contiguous `f32` rows of this index's width, normalised for cosine.
    fn rows_of(&self, vectors: &Tensor, op: &'static str) -> Result<Vec<f32>> {
        let size = vectors.size();
        if size.len() != 2 || size[1] as usize != self.dim() {
            return Err(Error::Shape {
                op,
                message: format!(
                    "expected rows [N, {}] (the index's width), got {size:?}",
                    self.dim()
                ),
            });
        }
        check_finite(op, vectors)?;
        let rows = no_grad(|| {
            vectors
                .to_kind(Kind::Float)
                .to_device(contrastive_tensor::Device::Cpu)
                .contiguous()
        });
        let mut rows = with_f32_slice(&rows, <[f32]>::to_vec);
        if self.config.metric == Metric::Cosine {
            // In place: a normalised copy of a million rows would double the peak memory.
            rows.par_chunks_mut(self.dim()).for_each(|row| {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= norm);
            });
        }
        Ok(rows)
    }

    /// Rows in the index.
    pub fn len(&self) -> usize {
        self.graph.len()
    }

    /// Whether the index holds no rows.
    pub fn is_empty(&self) -> bool {
        self.graph.len() == 0
    }

    /// Width of the rows.
    pub fn dim(&self) -> usize {
        self.graph.dim
    }

    /// The parameters it was built with (and searches with by default).
    pub fn config(&self) -> HnswConfig {
        self.config
    }

    /// Sets the default `ef_search`.
    pub fn set_ef_search(&mut self, ef: usize) -> Result<()> {
        let config = self.config.with_ef_search(ef);
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The label saved with the index (empty unless set).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sets the label saved with the index, such as the identity of the model whose
    /// embeddings it holds.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// Bytes held: rows, links and levels.
    pub fn memory_bytes(&self) -> usize {
        let g = &self.graph;
        g.vectors.len() * 4
            + (g.layer0.len() + g.upper.len()) * 4
            + g.levels.len()
            + g.upper_start.len() * std::mem::size_of::<usize>()
    }
}

/// The layer of `node`: `floor(-ln(u) / ln(m))` for a uniform `u` drawn from the seed and
/// the node alone, so adding rows later gives them the levels a single build would.
fn level_of(seed: u64, node: u64, m: usize) -> u8 {
    let bits = splitmix64(seed ^ splitmix64(node));
    // 53 random bits -> u in (0, 1].
    let u = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    (-u.ln() / (m as f64).ln()).floor().min(32.0) as u8
}

/// Steele, Lea & Flood's SplitMix64 finaliser: a well-mixed 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, seeded};

    use super::*;
    use crate::metrics::neighbour_recall;
    use crate::search::search;

    /// Rows near a few hundred centres on a 12-dimensional subspace, like real embeddings.
    fn clustered(n: i64, seed: u64) -> Tensor {
        seeded(seed, || {
            let cpu = (Kind::Float, Device::Cpu);
            let centres = Tensor::randn([200, 12], cpu);
            let pick = Tensor::randint(200, [n], (Kind::Int64, Device::Cpu));
            let latent = centres.index_select(0, &pick) + Tensor::randn([n, 12], cpu) * 0.3;
            latent.matmul(&Tensor::randn([12, 64], cpu)) + Tensor::randn([n, 64], cpu) * 0.05
        })
    }

    #[test]
    fn recall_is_high_for_every_metric_and_grows_with_ef() {
        let rows = clustered(3000, 3);
        let queries = clustered(200, 4);
        for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
            let config = HnswConfig::default().with_metric(metric);
            let shared = rows.shallow_clone();
            let index = on_one_thread(move || HnswIndex::build(&shared, config)).unwrap();
            let exact = search(&rows, &queries, 10, metric).unwrap();
            let found = index.search(&queries, 10).unwrap();
            let high = neighbour_recall(&found.indices, &exact.indices).unwrap();
            assert!(high >= 0.95, "{metric:?}: recall@10 {high}");
            let low = neighbour_recall(
                &index.search_with(&queries, 10, 10).unwrap().indices,
                &exact.indices,
            )
            .unwrap();
            assert!(low <= high, "{metric:?}: ef 10 gave {low}, ef 64 {high}");
            // Scores are the exact search's scores of the rows found.
            let best = found.indices.int64_value(&[0, 0]);
            let row = exact.indices.get(0).eq(best).nonzero();
            if row.size()[0] == 1 {
                let want = exact.scores.get(0).get(row.int64_value(&[0, 0]));
                let got = found.scores.get(0).get(0);
                assert!((want - got).abs().double_value(&[]) < 1e-3, "{metric:?}");
            }
        }
    }

    /// Runs `work` on a pool of one rayon thread, where a build gives the same graph for a
    /// seed: a test's recall is then the same every run (with more threads, the graph
    /// depends on scheduling, and 49 of 50 self-matches became 48 once in 50 loaded runs).
    fn on_one_thread<T: Send>(work: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(work)
    }

    #[test]
    fn added_rows_are_found_and_k_is_clamped() {
        let rows = clustered(1500, 5);
        let (first, more) = (rows.narrow(0, 0, 1000), rows.narrow(0, 1000, 500));
        let index = on_one_thread(move || {
            let mut index = HnswIndex::build(&first, HnswConfig::default()).unwrap();
            index.add(&more).unwrap();
            index
        });
        assert_eq!(index.len(), 1500);
        let found = index.search(&rows.narrow(0, 1200, 50), 1).unwrap();
        let own = Tensor::arange_start(1200, 1250, (Kind::Int64, Device::Cpu));
        assert!(
            found
                .indices
                .select(1, 0)
                .eq_tensor(&own)
                .sum(Kind::Int64)
                .int64_value(&[])
                >= 49
        );
        let tiny = HnswIndex::build(&rows.narrow(0, 0, 3), HnswConfig::default()).unwrap();
        assert_eq!(
            tiny.search(&rows.narrow(0, 0, 2), 10)
                .unwrap()
                .indices
                .size(),
            [2, 3]
        );
    }

    #[test]
    fn one_thread_builds_the_same_graph_for_a_seed() {
        let rows = Vec::<f32>::try_from(&clustered(800, 6).flatten(0, -1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<Vec<u8>> = (0..2)
            .map(|i| {
                let path = dir.path().join(format!("{i}.safetensors"));
                let build = || {
                    let rows = Tensor::from_slice(&rows).view([800, 64]);
                    HnswIndex::build(&rows, HnswConfig::default())
                };
                on_one_thread(build).unwrap().save(&path).unwrap();
                std::fs::read(path).unwrap()
            })
            .collect();
        assert_eq!(bytes[0], bytes[1]);
    }

    #[test]
    fn a_saved_index_answers_as_the_original() {
        let rows = clustered(2000, 7);
        let queries = clustered(50, 8);
        let mut index =
            HnswIndex::build(&rows, HnswConfig::default().with_metric(Metric::L2)).unwrap();
        index.set_label("model-abc");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.safetensors");
        index.save(&path).unwrap();
        let back = HnswIndex::load(&path).unwrap();
        assert_eq!(
            (back.len(), back.dim(), back.label()),
            (2000, 64, "model-abc")
        );
        assert_eq!(back.config(), index.config());
        let (a, b) = (
            index.search(&queries, 5).unwrap(),
            back.search(&queries, 5).unwrap(),
        );
        assert!(a.indices.equal(&b.indices) && a.scores.equal(&b.scores));
    }

    #[test]
    fn bad_parameters_shapes_and_files_are_clear_errors() {
        let rows = clustered(100, 9);
        for (config, field) in [
            (HnswConfig::default().with_m(1), "m"),
            (
                HnswConfig::default().with_ef_construction(4),
                "ef_construction",
            ),
            (HnswConfig::default().with_ef_search(0), "ef_search"),
        ] {
            let err = HnswIndex::build(&rows, config).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let index = HnswIndex::build(&rows, HnswConfig::default()).unwrap();
        let wide = Tensor::zeros([2, 65], (Kind::Float, Device::Cpu));
        assert!(
            index
                .search(&wide, 3)
                .unwrap_err()
                .to_string()
                .contains("64")
        );
        assert!(index.search(&rows, 0).is_err());
        let empty = Tensor::zeros([0, 64], (Kind::Float, Device::Cpu));
        let empty = HnswIndex::build(&empty, HnswConfig::default()).unwrap();
        assert!(
            empty
                .search(&rows, 1)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.safetensors");
        index.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = HnswIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("index.safetensors"), "{err}");
        // A store is not an index.
        let other = dir.path().join("other.safetensors");
        contrastive_tensor::save_safetensors(&other, &[("x", &rows)], &Default::default()).unwrap();
        let err = HnswIndex::load(&other).unwrap_err().to_string();
        assert!(err.contains("not a usable HNSW index"), "{err}");
    }
}
