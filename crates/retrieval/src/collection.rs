//! Collections: embeddings with their items that grow by inserts and answer top-k queries,
//! behind one trait so that a service or a command works the same over a local store and a
//! database. [`LocalCollection`] is the local backend: an [`EmbeddingStore`] file, with an
//! optional [`HnswIndex`] beside it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use contrastive_tensor::{Kind, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::hnsw::HnswIndex;
use crate::item::Item;
use crate::search::{Metric, Neighbours};
use crate::store::{EmbeddingStore, Preprocess, short};
use crate::{Error, Result};

/// A search result: an item and its score (a similarity for cosine and inner product,
/// larger is closer; a distance for L2, smaller is closer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The item found.
    #[serde(flatten)]
    pub item: Item,
    /// Its score against the query.
    pub score: f32,
}

/// What a collection records about itself: a vector of another model or width is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// The identity of the model whose embeddings it holds (its weights' SHA-256).
    pub model: String,
    /// The width of its vectors.
    pub dim: usize,
    /// How it measures closeness.
    pub metric: Metric,
    /// How a query image must be prepared to be comparable.
    pub preprocess: Preprocess,
}

impl CollectionInfo {
    /// An error unless `model` and `dim` are this collection's: checked before any write.
    pub fn check(&self, model: &str, dim: usize) -> Result<()> {
        if model != self.model {
            return Err(invalid(
                "model",
                format!(
                    "the collection holds embeddings of model {}, not of {}; use another \
                     collection for another model",
                    short(&self.model),
                    short(model)
                ),
            ));
        }
        if dim != self.dim {
            return Err(Error::Shape {
                op: "collection",
                message: format!(
                    "the collection holds {}-wide vectors, these are {dim}-wide",
                    self.dim
                ),
            });
        }
        Ok(())
    }
}

/// A collection of embeddings: the local store or a database. Methods take `&mut self`
/// because a database backend holds one connection; share one behind a mutex.
pub trait Collection: Send {
    /// Its model, width, metric and preprocessing.
    fn info(&self) -> &CollectionInfo;

    /// Items it holds.
    fn count(&mut self) -> Result<usize>;

    /// Adds `items` with their `vectors` (`[items.len(), dim]`, finite), made by `model`;
    /// items it already holds (see [`Collection::held`]) are skipped, and so is an item
    /// repeated in `items`, so a re-run adds only what is missing. Returns how many were
    /// added. Another model or width is refused before any write.
    fn add(&mut self, items: &[Item], vectors: &Tensor, model: &str) -> Result<usize>;

    /// The `k` items nearest `query` (`[dim]` or `[1, dim]`), best first, only those labelled
    /// `label` when given. `k` beyond the collection is clamped; `k = 0` and an empty
    /// collection are errors.
    fn search(&mut self, query: &Tensor, k: usize, label: Option<&str>) -> Result<Vec<Hit>>;

    /// The item with this id, if held.
    fn get(&mut self, id: &str) -> Result<Option<Item>>;

    /// The stored vector `[dim]` of the item with this id, if held.
    fn vector(&mut self, id: &str) -> Result<Option<Tensor>>;

    /// Which of `items` it already holds, by id or by content hash: each one's id mapped to
    /// the id it is held under (another id for a copy of a held image).
    fn held(&mut self, items: &[Item]) -> Result<HashMap<String, String>>;

    /// Removes the items with these ids; returns how many it held.
    fn delete(&mut self, ids: &[String]) -> Result<usize>;

    /// Every item and its vector (`[N, dim]`), for clustering the whole collection.
    fn all(&mut self) -> Result<(Vec<Item>, Tensor)>;
}

/// The local backend: an [`EmbeddingStore`] held in memory, written back to its file after
/// every change, and an optional [`HnswIndex`] kept in step (searches without a label
/// filter go through it; filtered ones scan the matching rows exactly).
#[derive(Debug)]
pub struct LocalCollection {
    store: EmbeddingStore,
    index: Option<(HnswIndex, Option<PathBuf>)>,
    path: Option<PathBuf>,
    info: CollectionInfo,
}

impl LocalCollection {
    /// A collection over `store`, kept in memory only, searched exactly by `metric`.
    pub fn new(store: EmbeddingStore, metric: Metric) -> Self {
        let info = CollectionInfo {
            model: store.info().model.clone(),
            dim: store.dim() as usize,
            metric,
            preprocess: store.info().preprocess.clone(),
        };
        Self {
            store,
            index: None,
            path: None,
            info,
        }
    }

    /// The store at `path` (written back there after every change), searched by cosine,
    /// or through the HNSW index at `index` (built for this store by `contrastive index`;
    /// its metric is the collection's, and it is written back too).
    pub fn open(path: &Path, index: Option<&Path>) -> Result<Self> {
        let store = EmbeddingStore::load(path)?;
        let mut collection = Self::new(store, Metric::Cosine);
        collection.path = Some(path.to_owned());
        if let Some(index_path) = index {
            let hnsw = HnswIndex::load(index_path)?;
            collection = collection.with_index(hnsw)?;
            if let Some((_, at)) = &mut collection.index {
                *at = Some(index_path.to_owned());
            }
        }
        Ok(collection)
    }

    /// Searches through `index`, which must hold this store's vectors (same model label and
    /// count); the collection takes its metric.
    pub fn with_index(mut self, index: HnswIndex) -> Result<Self> {
        if index.label() != self.info.model || index.len() != self.store.len() {
            return Err(invalid(
                "index",
                format!(
                    "it indexes {} vectors of model {:?}, the store holds {} of model {}; \
                     rebuild it with `contrastive index`",
                    index.len(),
                    index.label(),
                    self.store.len(),
                    short(&self.info.model)
                ),
            ));
        }
        self.info.metric = index.config().metric;
        self.index = Some((index, None));
        Ok(self)
    }

    /// The store behind the collection.
    pub fn store(&self) -> &EmbeddingStore {
        &self.store
    }

    fn item(&self, row: usize) -> Item {
        let info = self.store.info();
        Item {
            id: info.ids[row].clone(),
            source: info.ids[row].clone(),
            label: info.labels.as_ref().and_then(|l| l[row].clone()),
            content: info.contents.as_ref().and_then(|c| c[row].clone()),
        }
    }

    fn row_of(&self, id: &str) -> Option<usize> {
        self.store.info().ids.iter().position(|i| i == id)
    }

    fn save(&self) -> Result<()> {
        if let Some(path) = &self.path {
            self.store.save(path)?;
        }
        if let Some((index, Some(path))) = &self.index {
            index.save(path)?;
        }
        Ok(())
    }

    fn hits(&self, found: &Neighbours, rows: Option<&[i64]>) -> Result<Vec<Hit>> {
        let scores = Vec::<f32>::try_from(&found.scores.get(0))?;
        let indices = Vec::<i64>::try_from(&found.indices.get(0))?;
        Ok(indices
            .iter()
            .zip(scores)
            .filter(|(i, _)| **i >= 0)
            .map(|(&i, score)| {
                let row = rows.map_or(i, |rows| rows[i as usize]) as usize;
                Hit {
                    item: self.item(row),
                    score,
                }
            })
            .collect())
    }
}

impl Collection for LocalCollection {
    fn info(&self) -> &CollectionInfo {
        &self.info
    }

    fn count(&mut self) -> Result<usize> {
        Ok(self.store.len())
    }

    fn add(&mut self, items: &[Item], vectors: &Tensor, model: &str) -> Result<usize> {
        self.info.check(model, width(vectors))?;
        if vectors.size()[0] as usize != items.len() {
            return Err(Error::Shape {
                op: "collection",
                message: format!("{} vectors for {} items", vectors.size()[0], items.len()),
            });
        }
        let held = self.held(items)?;
        let fresh = fresh_rows(items, &held);
        if fresh.is_empty() {
            return Ok(0);
        }
        let rows = vectors.index_select(0, &Tensor::from_slice(&fresh));
        let picked: Vec<Item> = fresh.iter().map(|&i| items[i as usize].clone()).collect();
        self.store.add_items(&rows, &picked, model)?;
        if let Some((index, _)) = &mut self.index {
            index.add(&rows)?;
        }
        self.save()?;
        Ok(fresh.len())
    }

    fn search(&mut self, query: &Tensor, k: usize, label: Option<&str>) -> Result<Vec<Hit>> {
        let query = query.reshape([1, -1]).to_kind(Kind::Float);
        if self.store.is_empty() {
            return Err(Error::Shape {
                op: "collection search",
                message: "the collection is empty".into(),
            });
        }
        match label {
            Some(label) => {
                let labels = self.store.info().labels.as_deref().unwrap_or(&[]);
                let rows: Vec<i64> = (0..labels.len())
                    .filter(|&r| labels[r].as_deref() == Some(label))
                    .map(|r| r as i64)
                    .collect();
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let subset = self
                    .store
                    .embeddings()
                    .index_select(0, &Tensor::from_slice(&rows));
                let found = crate::search(&subset, &query, k, self.info.metric)?;
                self.hits(&found, Some(&rows))
            }
            None => {
                let found = match &self.index {
                    Some((index, _)) => index.search(&query, k)?,
                    None => self.store.search(&query, k, self.info.metric)?,
                };
                self.hits(&found, None)
            }
        }
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>> {
        Ok(self.row_of(id).map(|row| self.item(row)))
    }

    fn vector(&mut self, id: &str) -> Result<Option<Tensor>> {
        Ok(self
            .row_of(id)
            .map(|row| self.store.embeddings().get(row as i64)))
    }

    fn held(&mut self, items: &[Item]) -> Result<HashMap<String, String>> {
        let info = self.store.info();
        let ids: HashSet<&str> = info.ids.iter().map(String::as_str).collect();
        let contents: HashMap<&str, &str> = match &info.contents {
            Some(contents) => (contents.iter().zip(&info.ids))
                .filter_map(|(c, id)| Some((c.as_deref()?, id.as_str())))
                .collect(),
            None => HashMap::new(),
        };
        Ok(held_items(
            items,
            |id| ids.contains(id),
            |content| contents.get(content).map(|id| (*id).to_owned()),
        ))
    }

    fn delete(&mut self, ids: &[String]) -> Result<usize> {
        let gone: HashSet<&String> = ids.iter().collect();
        let keep: Vec<i64> = (0..self.store.len())
            .filter(|&r| !gone.contains(&self.store.info().ids[r]))
            .map(|r| r as i64)
            .collect();
        let removed = self.store.len() - keep.len();
        if removed == 0 {
            return Ok(0);
        }
        self.store.retain_rows(&keep)?;
        if let Some((index, _)) = &self.index {
            // An HNSW graph cannot drop nodes; it is rebuilt over what is left.
            let config = index.config();
            let mut rebuilt = HnswIndex::build(self.store.embeddings(), config)?;
            rebuilt.set_label(&self.info.model);
            self.index.as_mut().expect("checked above").0 = rebuilt;
        }
        self.save()?;
        Ok(removed)
    }

    fn all(&mut self) -> Result<(Vec<Item>, Tensor)> {
        let items = (0..self.store.len()).map(|r| self.item(r)).collect();
        Ok((items, self.store.embeddings().shallow_clone()))
    }
}

/// What [`Collection::held`] answers, for a backend that tells whether it holds an id
/// (`has_id`) and under which id it holds a content hash (`under`): each held item's id
/// mapped to the id it is held under (its own first, else its content's).
pub fn held_items(
    items: &[Item],
    has_id: impl Fn(&str) -> bool,
    under: impl Fn(&str) -> Option<String>,
) -> HashMap<String, String> {
    items
        .iter()
        .filter_map(|item| {
            let found = if has_id(&item.id) {
                Some(item.id.clone())
            } else {
                item.content.as_deref().and_then(&under)
            };
            found.map(|found| (item.id.clone(), found))
        })
        .collect()
}

/// The rows of `items` to insert: those not `held`, each id and each content hash once
/// (the first of repeats).
fn fresh_rows(items: &[Item], held: &HashMap<String, String>) -> Vec<i64> {
    let mut ids = HashSet::new();
    let mut contents = HashSet::new();
    (0..items.len())
        .filter(|&i| {
            let item = &items[i];
            !held.contains_key(&item.id)
                && ids.insert(&item.id)
                && item.content.as_ref().is_none_or(|c| contents.insert(c))
        })
        .map(|i| i as i64)
        .collect()
}

/// The width of `[N, D]` vectors (0 when they are not two-dimensional, which every width
/// check then refuses).
fn width(vectors: &Tensor) -> usize {
    match vectors.size()[..] {
        [_, d] => d as usize,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, seeded};

    use super::*;
    use crate::hnsw::HnswConfig;
    use crate::store::StoreInfo;

    fn collection(n: usize, indexed: bool) -> (LocalCollection, Tensor) {
        let x = seeded(21, || {
            Tensor::randn([n as i64 + 10, 5], (Kind::Float, Device::Cpu))
        });
        let info = StoreInfo {
            model: "m".into(),
            ids: (0..n).map(|i| format!("i{i}")).collect(),
            preprocess: Preprocess {
                size: 8,
                channels: 1,
                mean: vec![0.0],
                std: vec![1.0],
            },
            videos: None,
            labels: Some((0..n).map(|i| Some(format!("c{}", i % 2))).collect()),
            contents: None,
        };
        let store = EmbeddingStore::new(&x.narrow(0, 0, n as i64), info).unwrap();
        let mut local = LocalCollection::new(store, Metric::Cosine);
        if indexed {
            let mut index =
                HnswIndex::build(&x.narrow(0, 0, n as i64), HnswConfig::default()).unwrap();
            index.set_label("m");
            local = local.with_index(index).unwrap();
        }
        (local, x)
    }

    #[test]
    fn a_local_collection_grows_filters_and_shrinks_with_its_index_in_step() {
        for indexed in [false, true] {
            let (mut c, x) = collection(20, indexed);
            let new = |range: std::ops::Range<usize>| -> Vec<Item> {
                range
                    .map(|i| Item {
                        label: Some("new".into()),
                        ..Item::new(format!("i{i}"))
                    })
                    .collect()
            };
            assert_eq!(c.add(&new(18..25), &x.narrow(0, 18, 7), "m").unwrap(), 5);
            // Known content: a copy under another name is held under the first one's id,
            // and so is a repeat within one call.
            let hashed = |id: &str, content: &str| Item {
                content: Some(content.into()),
                ..Item::new(id.into())
            };
            let two = [hashed("p", "h1"), hashed("q", "h1")];
            assert_eq!(c.add(&two, &x.narrow(0, 25, 2), "m").unwrap(), 1);
            let copies = [hashed("r", "h1"), hashed("s", "h2"), hashed("i3", "h3")];
            let held = c.held(&copies).unwrap();
            assert_eq!(held.len(), 2);
            assert_eq!(held["r"], "p");
            assert_eq!(held["i3"], "i3");
            assert_eq!(c.get("p").unwrap().unwrap().content.as_deref(), Some("h1"));
            assert!(c.delete(&["p".into()]).is_ok_and(|n| n == 1));
            assert_eq!(c.count().unwrap(), 25);
            assert!(c.add(&new(25..26), &x.narrow(0, 25, 1), "other").is_err());
            let hits = c.search(&x.get(22), 3, None).unwrap();
            assert_eq!(hits[0].item.id, "i22");
            let only = c.search(&x.get(22), 4, Some("c1")).unwrap();
            assert_eq!(only.len(), 4);
            assert!(only.iter().all(|h| h.item.label.as_deref() == Some("c1")));
            assert_eq!(c.delete(&["i22".into(), "zz".into()]).unwrap(), 1);
            assert_ne!(c.search(&x.get(22), 1, None).unwrap()[0].item.id, "i22");
            assert!(c.get("i22").unwrap().is_none());
            assert_eq!(c.vector("i3").unwrap().unwrap().size(), [5]);
            assert_eq!(c.all().unwrap().0.len(), 24);
            assert!(c.search(&x.get(0), 0, None).is_err());
        }
    }
}
