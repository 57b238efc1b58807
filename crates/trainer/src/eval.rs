//! Embedding a split with the backbone and the evaluations of a run: the kNN monitor and
//! the final linear probe.

use contrastive_augment::{BatchFormat, Image, to_batch};
use std::path::Path;

use contrastive_models::{EmbeddingModel, load_model};
use contrastive_retrieval::{
    KMeans, KnnClassifier, LinearProbe, Metric, accuracy, ari, clustering_accuracy, nmi, normalize,
    retrieval_metrics,
};
use contrastive_tensor::{
    Device, Kind, Normalize, Precision, Tensor, autocast, no_grad, var_store_to_channels_last,
};
use serde::{Deserialize, Serialize};

use crate::config::{EvalConfig, TrainConfig};
use crate::data::SplitData;
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
}

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

/// Evaluates a saved model (a run's `model.safetensors`) on the data `config` names, with
/// the run's device, precision and evaluation settings: the same figures as the run's final
/// report.
pub fn evaluate_saved(config: &TrainConfig, model_path: &Path) -> Result<Evaluation> {
    let (device, precision, channels_last) = config.run.numerics()?;
    let data = crate::data::load(&config.data)?;
    let (vs, model) = load_model(model_path, device)?;
    if channels_last {
        var_store_to_channels_last(&vs)?;
    }
    let input = Input {
        device,
        precision,
        format: Input::format(&data.mean, &data.std, channels_last)?,
    };
    let test = data.test.as_ref().ok_or_else(|| Error::MissingData {
        message: "the dataset has no labeled held-out split to evaluate on (data.test_dir)".into(),
    })?;
    let features =
        Features::of(&model, &data.train, test, &input)?.ok_or_else(|| Error::MissingData {
            message: "evaluation needs labels on both splits".into(),
        })?;
    features.evaluate(&config.eval, data.classes.len(), config.run.seed, None)
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
    /// Training features `[N, F]`.
    pub train: Tensor,
    /// Training labels `[N]`.
    pub train_labels: Tensor,
    /// Held-out features `[M, F]`.
    pub test: Tensor,
    /// Held-out labels `[M]`.
    pub test_labels: Tensor,
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
        let (Some(train_labels), Some(test_labels)) = (&train.labels, &test.labels) else {
            return Ok(None);
        };
        Ok(Some(Self {
            train: embed(model, &train.images, input)?,
            train_labels: labels_tensor(train_labels),
            test: embed(model, &test.images, input)?,
            test_labels: labels_tensor(test_labels),
        }))
    }

    /// Weighted kNN top-1 of the held-out split against the training split.
    pub fn knn_top1(&self, k: usize, temperature: f64, classes: usize) -> Result<f64> {
        let knn = KnnClassifier::new(k, temperature)?;
        let predicted = knn.predict(&self.train, &self.train_labels, &self.test, classes)?;
        Ok(accuracy(&predicted, &self.test_labels))
    }

    /// The whole final evaluation: kNN (unless `knn` was measured already), the linear
    /// probe (when `config.linear_probe_epochs > 0`), retrieval and k-means.
    pub fn evaluate(
        &self,
        config: &EvalConfig,
        classes: usize,
        seed: u64,
        knn: Option<f64>,
    ) -> Result<Evaluation> {
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
                Some(self.linear_probe_top1(config.linear_probe_epochs, classes)?);
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
        results.kmeans_nmi = Some(nmi(&truth, &clustering.labels));
        results.kmeans_ari = Some(ari(&truth, &clustering.labels));
        results.kmeans_accuracy = Some(clustering_accuracy(&truth, &clustering.labels));
        Ok(())
    }

    /// Linear-probe top-1 on the held-out split.
    pub fn linear_probe_top1(&self, epochs: usize, classes: usize) -> Result<f64> {
        let probe = LinearProbe {
            epochs,
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
