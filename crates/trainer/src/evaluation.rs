//! The evaluations of a run: embedding a split with the backbone, the kNN monitor, the
//! linear probe, retrieval metrics and k-means on the held-out split.

use contrastive_augment::{BatchFormat, Image, to_batch};
use std::sync::Arc;

use contrastive_models::EmbeddingModel;
use contrastive_retrieval::{
    FrameLabels, FrameRetrieval, KMeans, KnnClassifier, LinearProbe, Metric, accuracy, ari,
    clustering_accuracy, frame_retrieval, nmi, normalize, retrieval_metrics,
};
use contrastive_tensor::{Device, Kind, Normalize, Precision, Tensor, autocast, no_grad};
use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;
use crate::split::SplitData;
use crate::split::VideoIndex;
use crate::{Error, Result};

/// What the final evaluation measured on the held-out split (fields are absent when not
/// measured).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Weighted kNN top-1 against the training split.
    pub knn_top1: Option<f64>,
    /// Linear-probe top-1.
    pub linear_probe_top1: Option<f64>,
    /// Precision@1 of the held-out split searched against itself (cosine).
    pub precision_at_1: Option<f64>,
    /// MAP@R of the same search.
    pub map_at_r: Option<f64>,
    /// NMI of k-means (k = number of classes) against the labels.
    pub kmeans_nmi: Option<f64>,
    /// ARI of the same clustering.
    pub kmeans_ari: Option<f64>,
    /// Accuracy of the same clustering under the best cluster-to-class matching.
    pub kmeans_accuracy: Option<f64>,
    /// Video: fraction of held-out frames whose nearest frame outside their own scene is of
    /// their own video.
    pub video_recall_at_1: Option<f64>,
    /// Video: the same with any of the 10 nearest.
    pub video_recall_at_10: Option<f64>,
    /// Video: fraction of frames whose nearest frame, outside the `SCENE_EXCLUDE` frames
    /// around them, is of their own scene.
    pub scene_recall_at_1: Option<f64>,
    /// Video: fraction of scene clips (mean frame embedding) whose nearest clip is of their
    /// own video.
    pub clip_recall_at_1: Option<f64>,
    /// Video: NMI of k-means over the frames (k = number of videos) against the videos.
    pub video_nmi: Option<f64>,
}

/// Frames this close to a query (in the same video) are left out of its same-scene search.
pub const SCENE_EXCLUDE: usize = 5;

/// How images become model input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The device the model lives on.
    pub device: Device,
    /// Autocast precision.
    pub precision: Precision,
    /// The batch layout and normalisation.
    pub format: BatchFormat,
}

impl Input {
    /// `views` as one normalised batch on the device.
    pub fn batch(&self, views: &[Image]) -> Result<Tensor> {
        Ok(to_batch(views, &self.format)?.to_device(self.device))
    }

    /// The format for `mean`/`std` normalised float batches.
    pub fn format(mean: &[f32], std: &[f32], channels_last: bool) -> Result<BatchFormat> {
        Ok(BatchFormat {
            float: Some(Some(Normalize::new(mean.to_vec(), std.to_vec())?)),
            channels_last,
        })
    }
}

/// Backbone features `[N, F]` (`f32`, on the CPU) of `images`, in evaluation mode.
pub fn embed(model: &EmbeddingModel, images: &[Image], input: &Input) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in images.chunks(1024) {
        let x = input.batch(chunk)?;
        let features = no_grad(|| -> Result<Tensor> {
            let _mixed = autocast(input.device, input.precision)?;
            Ok(model.features(&x, false))
        })?;
        parts.push(features.to_kind(Kind::Float).to_device(Device::Cpu));
    }
    Ok(Tensor::cat(&parts, 0))
}

/// Features and labels of the training and held-out splits.
#[derive(Debug)]
pub struct Features {
    /// Training features `[N, F]` (none for video, judged within the held-out videos).
    pub train: Tensor,
    /// Training labels `[N]`.
    pub train_labels: Tensor,
    /// Held-out features `[M, F]`.
    pub test: Tensor,
    /// Held-out labels `[M]` (for video, each frame's video).
    pub test_labels: Tensor,
    /// For video: where each held-out frame comes from.
    pub test_video: Option<Arc<VideoIndex>>,
}

fn labels_tensor(labels: &[usize]) -> Tensor {
    Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
}

impl Features {
    /// Embeds both splits; `None` when either lacks labels.
    pub fn of(
        model: &EmbeddingModel,
        train: &SplitData,
        test: &SplitData,
        input: &Input,
    ) -> Result<Option<Self>> {
        if train.labels.is_none() || test.labels.is_none() {
            return Ok(None);
        }
        Self::labeled(train, test, &|images| embed(model, images, input)).map(Some)
    }

    /// The features (by `features`) of two labeled splits, with their labels. Video is
    /// judged within the held-out videos alone, so its training frames are left out.
    pub(crate) fn labeled(
        train: &SplitData,
        test: &SplitData,
        features: &dyn Fn(&[Image]) -> Result<Tensor>,
    ) -> Result<Self> {
        let (Some(train_labels), Some(test_labels)) = (&train.labels, &test.labels) else {
            return Err(Error::MissingData {
                message: "evaluation needs labels on both splits".into(),
            });
        };
        let test_x = features(&test.images)?;
        let train_x = match test.video {
            Some(_) => test_x.narrow(0, 0, 0),
            None => features(&train.images)?,
        };
        Ok(Self {
            train: train_x,
            train_labels: labels_tensor(train_labels),
            test: test_x,
            test_labels: labels_tensor(test_labels),
            test_video: test.video.clone(),
        })
    }

    /// The figure the trainer watches each epoch: kNN top-1 for images, same-video
    /// recall@1 for video (whose held-out videos are not the training ones).
    pub fn monitor(&self, config: &EvalConfig, classes: usize) -> Result<f64> {
        match &self.test_video {
            Some(index) => Ok(self.frame_retrieval(index, &[1])?.video_recall_at_k[0].1),
            None => self.knn_top1(config.knn_k, config.knn_temperature, classes),
        }
    }

    fn frame_retrieval(&self, index: &VideoIndex, ks: &[usize]) -> Result<FrameRetrieval> {
        let labels = FrameLabels {
            video: &index.video,
            scene: &index.scene,
            frame: &index.frame,
        };
        Ok(frame_retrieval(&self.test, labels, ks, SCENE_EXCLUDE)?)
    }

    /// The video evaluation of the held-out frames: frame and clip retrieval, and k-means
    /// over videos.
    fn video_metrics(&self, index: &VideoIndex, seed: u64) -> Result<Evaluation> {
        let retrieval = self.frame_retrieval(index, &[1, 10])?;
        let clustering = KMeans::new(index.names.len(), seed).fit(&normalize(&self.test))?;
        Ok(Evaluation {
            video_recall_at_1: Some(retrieval.video_recall_at_k[0].1),
            video_recall_at_10: Some(retrieval.video_recall_at_k[1].1),
            scene_recall_at_1: Some(retrieval.scene_recall_at_1),
            clip_recall_at_1: retrieval.clip_recall_at_1,
            video_nmi: Some(nmi(&index.video, &clustering.labels)?),
            ..Default::default()
        })
    }

    /// Weighted kNN top-1 of the held-out split against the training split.
    pub fn knn_top1(&self, k: usize, temperature: f64, classes: usize) -> Result<f64> {
        let knn = KnnClassifier::new(k, temperature)?;
        let predicted = knn.predict(&self.train, &self.train_labels, &self.test, classes)?;
        Ok(accuracy(&predicted, &self.test_labels))
    }

    /// The whole final evaluation: kNN (unless `knn` was measured already), the linear
    /// probe (when `config.linear_probe_epochs > 0`), retrieval and k-means; for video, the
    /// video metrics instead.
    pub fn evaluate(
        &self,
        config: &EvalConfig,
        classes: usize,
        seed: u64,
        knn: Option<f64>,
    ) -> Result<Evaluation> {
        if let Some(index) = &self.test_video {
            return self.video_metrics(index, seed);
        }
        let mut results = Evaluation {
            knn_top1: knn,
            ..Default::default()
        };
        if results.knn_top1.is_none() {
            results.knn_top1 =
                Some(self.knn_top1(config.knn_k, config.knn_temperature, classes)?);
        }
        if config.linear_probe_epochs > 0 {
            results.linear_probe_top1 =
                Some(self.linear_probe_top1(config.linear_probe_epochs, classes, seed)?);
        }
        self.test_metrics(classes, seed, &mut results)?;
        Ok(results)
    }

    /// Retrieval (precision@1, MAP@R) and k-means (NMI, ARI, accuracy) on the held-out
    /// split's features, into `results`.
    fn test_metrics(&self, classes: usize, seed: u64, results: &mut Evaluation) -> Result<()> {
        let retrieval = retrieval_metrics(&self.test, &self.test_labels, Metric::Cosine, &[1])?;
        results.precision_at_1 = Some(retrieval.precision_at_1);
        results.map_at_r = Some(retrieval.map_at_r);
        let clustering = KMeans::new(classes, seed).fit(&normalize(&self.test))?;
        let truth: Vec<usize> = Vec::<i64>::try_from(&self.test_labels)?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        results.kmeans_nmi = Some(nmi(&truth, &clustering.labels)?);
        results.kmeans_ari = Some(ari(&truth, &clustering.labels)?);
        results.kmeans_accuracy = Some(clustering_accuracy(&truth, &clustering.labels)?);
        Ok(())
    }

    /// Linear-probe top-1 on the held-out split (the probe's weights and order from `seed`).
    pub fn linear_probe_top1(&self, epochs: usize, classes: usize, seed: u64) -> Result<f64> {
        let probe = LinearProbe {
            epochs,
            seed,
            ..Default::default()
        };
        Ok(probe
            .evaluate(
                &self.train,
                &self.train_labels,
                &self.test,
                &self.test_labels,
                classes,
            )?
            .test_top1)
    }
}
