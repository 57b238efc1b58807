//! The pictures behind store ids: files read from disk, `dataset:split:index` items from
//! the dataset a run config names.

use std::path::Path;

use contrastive_augment::Image;
use contrastive_data::{Channels, Resize, conform, read_image};

use crate::config::TrainConfig;
use crate::{Error, Result};

/// The images behind store ids: file paths are read from disk; `dataset:split:index` ids
/// come from the dataset `config` names (read once).
pub fn images_for_ids(config: Option<&TrainConfig>, ids: &[String]) -> Result<Vec<Image>> {
    let images = ItemImages::new(config.cloned());
    ids.iter().map(|id| images.get(id)).collect()
}

/// Reads the images behind item ids as they are asked for: file paths from disk,
/// `dataset:split:index` ids from the dataset a run config names, loaded on first use and
/// kept (a service showing thumbnails reads the dataset once).
pub struct ItemImages {
    config: Option<TrainConfig>,
    data: std::sync::Mutex<Option<std::sync::Arc<crate::data::RunData>>>,
}

impl ItemImages {
    /// Images for ids of the run `config` (without one, only file paths can be read).
    pub fn new(config: Option<TrainConfig>) -> Self {
        Self {
            config,
            data: std::sync::Mutex::new(None),
        }
    }

    /// The image behind `id`, with its own channels and size.
    pub fn get(&self, id: &str) -> Result<Image> {
        let parts: Vec<&str> = id.split(':').collect();
        if let [_, split @ ("train" | "test"), index] = parts[..]
            && let Ok(index) = index.parse::<usize>()
        {
            let data = self.dataset(id)?;
            let set = if split == "train" {
                Some(&data.train)
            } else {
                data.test.as_ref()
            };
            return set
                .and_then(|s| s.images.get(index).cloned())
                .ok_or_else(|| Error::MissingData {
                    message: format!("{id} is not in the dataset"),
                });
        }
        let image = read_image(Path::new(id)).map_err(|e| Error::MissingData {
            message: e.to_string(),
        })?;
        Ok(conform(image, Channels::Keep, Resize::Keep))
    }

    fn dataset(&self, id: &str) -> Result<std::sync::Arc<crate::data::RunData>> {
        let config = self.config.as_ref().ok_or_else(|| Error::MissingData {
            message: format!("{id} is a dataset item; give the run (--run) to show it"),
        })?;
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if data.is_none() {
            *data = Some(std::sync::Arc::new(crate::data::load(&config.data)?));
        }
        Ok(data.as_ref().expect("loaded above").clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_read_and_dataset_ids_need_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        image::GrayImage::from_pixel(5, 4, image::Luma([9]))
            .save(&path)
            .unwrap();
        let images = images_for_ids(None, &[path.display().to_string()]).unwrap();
        assert_eq!(images[0].dim(), (4, 5, 1));
        let err = images_for_ids(None, &["fashion-mnist:train:3".into()]).unwrap_err();
        assert!(err.to_string().contains("--run"), "{err}");
        assert!(
            images_for_ids(
                None,
                &[dir.path().join("missing.png").display().to_string()]
            )
            .is_err()
        );
    }
}
