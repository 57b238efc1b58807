//! The service's state and its operations, all blocking (the HTTP layer runs them on
//! tokio's blocking threads): the collection and the model behind mutexes, uploads written
//! into a folder, the item images read as they are asked for.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use contrastive_data::{decode_image, image_from_hwc, pixel_hash};
use contrastive_retrieval::{Collection, Hit, Item, KMeans, normalize};
use contrastive_tensor::{Device, Tensor};
use contrastive_trainer::{ItemImages, QueryEmbedder, TrainConfig};
use image::DynamicImage;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Error};

/// What the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes (an upload form with its images).
    pub max_body: usize,
    /// Largest side an uploaded image may declare, in pixels.
    pub max_side: u32,
    /// Largest `k` of a search.
    pub max_k: usize,
}

impl Default for Limits {
    /// 16 MiB bodies, 8 192-pixel sides, k up to 1 000.
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            max_side: 8192,
            max_k: 1000,
        }
    }
}

/// A search service: a collection, the model that made it, and where uploads go.
pub struct Service {
    collection: Mutex<Box<dyn Collection>>,
    embedder: Mutex<QueryEmbedder>,
    images: ItemImages,
    uploads: PathBuf,
    pub(crate) limits: Limits,
    pub(crate) token: Option<String>,
    about: About,
}

/// What `/api/health` says besides the count.
#[derive(Debug, Clone, Serialize)]
struct About {
    model: String,
    dim: usize,
    metric: contrastive_retrieval::Metric,
}

/// A cluster of the collection: its size and the items nearest its centre.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cluster {
    size: usize,
    items: Vec<Item>,
}

impl Service {
    /// A service over `collection` with the model at `model_path`, which must be the model
    /// that made the collection (checked here). Dataset ids are read through the run
    /// `config`; uploads are written into `uploads`; with a `token`, every API call must
    /// carry it.
    pub fn open(
        collection: Box<dyn Collection>,
        model_path: &Path,
        config: Option<TrainConfig>,
        uploads: PathBuf,
        limits: Limits,
        token: Option<String>,
    ) -> Result<Self, Error> {
        let info = collection.info().clone();
        let embedder = QueryEmbedder::open(model_path, &info.preprocess, Device::Cpu)?;
        if embedder.identity() != info.model {
            return Err(Error::Open(format!(
                "{} is not the model that made the collection (it holds embeddings of model \
                 {}); serve it with its own run",
                model_path.display(),
                &info.model[..info.model.len().min(12)]
            )));
        }
        if token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Open("the token is empty".into()));
        }
        Ok(Self {
            collection: Mutex::new(collection),
            embedder: Mutex::new(embedder),
            images: ItemImages::new(config),
            uploads,
            limits,
            token,
            about: About {
                model: info.model,
                dim: info.dim,
                metric: info.metric,
            },
        })
    }

    fn collection(&self) -> std::sync::MutexGuard<'_, Box<dyn Collection>> {
        // A panic while holding it leaves nothing half-written that later calls could see
        // (each backend call is whole or fails), so the lock is taken back.
        self.collection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `/api/health`: the item count, model and metric; the database's error when down.
    pub(crate) fn health(&self) -> Result<serde_json::Value, ApiError> {
        let items = self.collection().count()?;
        Ok(serde_json::json!({
            "status": "ok",
            "items": items,
            "model": self.about.model,
            "dim": self.about.dim,
            "metric": self.about.metric,
        }))
    }

    /// Decodes an upload, refusing what is not an image, truncated, or declares a side
    /// above the limit.
    pub(crate) fn decode(&self, bytes: &[u8], name: &str) -> Result<DynamicImage, ApiError> {
        if bytes.is_empty() {
            return Err(ApiError::bad_request(format!("{name} is empty")));
        }
        let image = decode_image(bytes, self.limits.max_side, Path::new(name)).map_err(|e| {
            ApiError::bad_request(format!(
                "{e} (at most {0} x {0} pixels, in any format the image crate reads)",
                self.limits.max_side
            ))
        })?;
        if image.width() == 0 || image.height() == 0 {
            return Err(ApiError::bad_request(format!("{name} has no pixels")));
        }
        Ok(image)
    }

    fn check_k(&self, k: usize) -> Result<(), ApiError> {
        if k == 0 || k > self.limits.max_k {
            return Err(ApiError::bad_request(format!(
                "k = {k}: ask for 1 to {} neighbours",
                self.limits.max_k
            )));
        }
        Ok(())
    }

    /// The `k` items nearest an uploaded image.
    pub(crate) fn search_image(
        &self,
        image: DynamicImage,
        k: usize,
        label: Option<&str>,
    ) -> Result<Vec<Hit>, ApiError> {
        self.check_k(k)?;
        let query = self.embed(vec![image])?;
        Ok(self.collection().search(&query, k, label)?)
    }

    /// The `k` items nearest a stored one (itself first).
    pub(crate) fn search_id(
        &self,
        id: &str,
        k: usize,
        label: Option<&str>,
    ) -> Result<Vec<Hit>, ApiError> {
        self.check_k(k)?;
        let mut collection = self.collection();
        let query = collection
            .vector(id)?
            .ok_or_else(|| ApiError::not_found(format!("no item {id:?} in the collection")))?;
        Ok(collection.search(&query, k, label)?)
    }

    fn embed(&self, images: Vec<DynamicImage>) -> Result<Tensor, ApiError> {
        let embedder = self.embedder.lock().unwrap_or_else(|e| e.into_inner());
        Ok(embedder.embed(images)?)
    }

    /// The item with this id.
    pub(crate) fn item(&self, id: &str) -> Result<Item, ApiError> {
        self.collection()
            .get(id)?
            .ok_or_else(|| ApiError::not_found(format!("no item {id:?} in the collection")))
    }

    /// The item's image as a PNG whose longer side is at most `size` (a smaller image
    /// keeps its size).
    pub(crate) fn thumbnail(&self, id: &str, size: u32) -> Result<Vec<u8>, ApiError> {
        if !(8..=1024).contains(&size) {
            return Err(ApiError::bad_request(format!(
                "size = {size}: thumbnails are 8 to 1024 pixels"
            )));
        }
        let item = self.item(id)?;
        let pixels = self.images.get(&item.source)?;
        let image = image_from_hwc(pixels.view()).map_err(|e| {
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })?;
        // Made smaller, never larger (the page scales small images itself).
        let small = if image.width().max(image.height()) > size {
            image.resize(size, size, image::imageops::FilterType::Triangle)
        } else {
            image
        };
        let mut png = Vec::new();
        small
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| {
                ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            })?;
        Ok(png)
    }

    /// Adds uploaded images (already decoded, with their bytes): each is written into the
    /// uploads folder under the SHA-256 of its bytes (the same file twice is one item),
    /// embedded and inserted; an image whose pixels the collection holds under another id
    /// is not added again. Returns the items (a copy's as held) and how many were new.
    pub(crate) fn add(
        &self,
        uploads: Vec<(Vec<u8>, DynamicImage)>,
        label: Option<String>,
    ) -> Result<(Vec<Item>, usize), ApiError> {
        std::fs::create_dir_all(&self.uploads).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "cannot create the uploads folder {}: {e}",
                    self.uploads.display()
                ),
            )
        })?;
        let embedder = self.embedder.lock().unwrap_or_else(|e| e.into_inner());
        let mut items = Vec::new();
        let mut images = Vec::new();
        for (bytes, image) in uploads {
            let hash: String = Sha256::digest(&bytes)
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            let path = self.uploads.join(format!("{hash}.png"));
            if !path.exists() {
                // Written as PNG (lossless) atomically: a crash leaves no half file.
                let partial = self.uploads.join(format!(".{hash}.png.partial"));
                image
                    .save_with_format(&partial, image::ImageFormat::Png)
                    .and_then(|()| std::fs::rename(&partial, &path).map_err(Into::into))
                    .map_err(|e| {
                        ApiError::new(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot write {}: {e}", path.display()),
                        )
                    })?;
            }
            let prepared = embedder.prepare(image);
            items.push(Item {
                label: label.clone(),
                content: Some(pixel_hash(&prepared)),
                ..Item::new(path.to_string_lossy().into_owned())
            });
            images.push(prepared);
        }
        let vectors = embedder.embed_prepared(&images)?;
        drop(embedder);
        let mut collection = self.collection();
        let held = collection.held(&items)?;
        let added = collection.add(&items, &vectors, &self.about.model)?;
        let mut answered = Vec::with_capacity(items.len());
        for item in items {
            answered.push(match held.get(&item.id) {
                Some(under) if *under != item.id => collection.get(under)?.unwrap_or(item),
                _ => item,
            });
        }
        Ok((answered, added))
    }

    /// Removes an item.
    pub(crate) fn delete(&self, id: &str) -> Result<(), ApiError> {
        match self.collection().delete(&[id.to_owned()])? {
            0 => Err(ApiError::not_found(format!(
                "no item {id:?} in the collection"
            ))),
            _ => Ok(()),
        }
    }

    /// k-means of the whole collection (cosine: normalised vectors), the `per` items nearest
    /// each centre.
    pub(crate) fn clusters(&self, k: usize, per: usize) -> Result<Vec<Cluster>, ApiError> {
        if !(1..=64).contains(&k) || !(1..=64).contains(&per) {
            return Err(ApiError::bad_request(format!(
                "k = {k}, per = {per}: both must be 1 to 64"
            )));
        }
        let (items, vectors) = self.collection().all()?;
        if items.len() < k {
            return Err(ApiError::bad_request(format!(
                "the collection holds {} items, fewer than k = {k}",
                items.len()
            )));
        }
        let x = normalize(&vectors);
        let clustering = KMeans::new(k, 0).fit(&x)?;
        let members = clustering.members_by_distance(&x)?;
        let mut clusters: Vec<Cluster> = members
            .into_iter()
            .map(|rows| Cluster {
                size: rows.len(),
                items: rows.iter().take(per).map(|&r| items[r].clone()).collect(),
            })
            .collect();
        clusters.sort_by_key(|c| std::cmp::Reverse(c.size));
        Ok(clusters)
    }
}
