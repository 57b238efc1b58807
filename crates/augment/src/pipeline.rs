//! Several views of every image of a batch, in parallel and reproducibly.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{Dims, Image, Result, Step, Transform};

/// Makes one view per transform of every image, on rayon's threads. Each (epoch, item, view)
/// has its own generator, keyed by the seed, so the views are the same whatever the number of
/// threads and whatever else is in the batch.
#[derive(Debug, Clone)]
pub struct MultiViewPipeline {
    views: Vec<Arc<dyn Transform>>,
    seed: u64,
}

impl MultiViewPipeline {
    /// One view per element of `views` (the same transform twice for SimCLR; two different
    /// ones for BYOL).
    pub fn new(views: Vec<Arc<dyn Transform>>, seed: u64) -> Self {
        Self { views, seed }
    }

    /// Number of views per image.
    pub fn view_count(&self) -> usize {
        self.views.len()
    }

    /// The generator of view `view` of item `item` (its dataset index) in `epoch`.
    pub fn rng(&self, epoch: u64, item: u64, view: u64) -> ChaCha8Rng {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.set_stream(
            item.wrapping_mul(self.views.len() as u64 + 1)
                .wrapping_add(view),
        );
        rng
    }

    /// Views of `images` (dataset indices `items`), view-major: `result[v][i]` is view `v`
    /// of image `i`.
    pub fn apply(&self, images: &[Image], items: &[usize], epoch: u64) -> Result<Vec<Vec<Image>>> {
        assert_eq!(
            images.len(),
            items.len(),
            "MultiViewPipeline::apply: one item index per image"
        );
        (0..self.views.len())
            .map(|v| {
                images
                    .par_iter()
                    .zip(items.par_iter())
                    .map(|(image, &item)| {
                        self.views[v].apply(image, &mut self.rng(epoch, item as u64, v as u64))
                    })
                    .collect()
            })
            .collect()
    }

    /// The plans of the views [`apply`](Self::apply) would make of images of `dims`
    /// (dataset indices `items`), view-major, drawn from the same generators: run on a
    /// tensor device with `apply_plans` (feature `tensor`), they give the same views.
    pub fn plans(&self, dims: &[Dims], items: &[usize], epoch: u64) -> Result<Vec<Vec<Vec<Step>>>> {
        assert_eq!(
            dims.len(),
            items.len(),
            "MultiViewPipeline::plans: one item index per image"
        );
        (0..self.views.len())
            .map(|v| {
                dims.iter()
                    .zip(items)
                    .map(|(&d, &item)| {
                        self.views[v].plan(d, &mut self.rng(epoch, item as u64, v as u64))
                    })
                    .collect()
            })
            .collect()
    }
}
