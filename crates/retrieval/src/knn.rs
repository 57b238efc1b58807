//! The weighted k-nearest-neighbour classifier used to monitor and judge embeddings.

use contrastive_tensor::{Kind, Tensor, no_grad};

use crate::error::{check_finite, invalid};
use crate::search::normalize;
use crate::{Error, Result};

/// Cosine-similarity kNN with a weighted vote (Wu et al., 2018, "Unsupervised feature
/// learning via non-parametric instance discrimination"): each of the `k` most similar
/// training items votes for its class with weight `exp(sim / temperature)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnClassifier {
    k: usize,
    temperature: f64,
    chunk: usize,
}

const OP: &str = "kNN";

impl KnnClassifier {
    /// `k` neighbours (at least 1), a positive `temperature` for the vote weights.
    pub fn new(k: usize, temperature: f64) -> Result<Self> {
        if k == 0 {
            return Err(invalid("k", "must be at least 1, got 0"));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(invalid(
                "temperature",
                format!("must be a positive number, got {temperature}"),
            ));
        }
        Ok(Self {
            k,
            temperature,
            chunk: 1024,
        })
    }

    /// Predicted classes `[M]` (int64) of `queries` `[M, D]` from `train` `[N, D]` with
    /// `labels` `[N]` in `0..classes`. Features are L2-normalised here; queries go through in
    /// chunks so memory stays at `chunk x N` similarities. When `k > N` all items vote.
    pub fn predict(
        &self,
        train: &Tensor,
        labels: &Tensor,
        queries: &Tensor,
        classes: usize,
    ) -> Result<Tensor> {
        check_inputs(train, labels, queries)?;
        check_finite("kNN training items", train)?;
        check_finite("kNN queries", queries)?;
        check_labels(labels, classes)?;
        no_grad(|| {
            let train = normalize(&train.to_kind(Kind::Float));
            let queries = normalize(&queries.to_kind(Kind::Float).to_device(train.device()));
            let labels = labels.to_device(train.device()).to_kind(Kind::Int64);
            let k = (self.k as i64).min(train.size()[0]);
            let m = queries.size()[0];
            let mut predicted = Vec::new();
            let mut start = 0;
            while start < m {
                let len = (self.chunk as i64).min(m - start);
                let sim = queries.narrow(0, start, len).matmul(&train.tr());
                let (top, index) = sim.topk(k, 1, true, true);
                let weights = (top / self.temperature).exp();
                let votes = Tensor::zeros([len, classes as i64], (Kind::Float, train.device()))
                    .scatter_add(1, &labels.take(&index), &weights);
                predicted.push(votes.argmax(1, false));
                start += len;
            }
            Ok(Tensor::cat(&predicted, 0))
        })
    }
}

/// The fraction of `predicted` equal to `truth` (both `[M]`).
pub fn accuracy(predicted: &Tensor, truth: &Tensor) -> f64 {
    assert_eq!(
        predicted.size(),
        truth.size(),
        "accuracy: predictions {:?} and labels {:?} differ in shape",
        predicted.size(),
        truth.size()
    );
    predicted
        .to_kind(Kind::Int64)
        .eq_tensor(&truth.to_kind(Kind::Int64).to_device(predicted.device()))
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// An error unless every label is in `0..classes` (and `classes` is at least 1).
fn check_labels(labels: &Tensor, classes: usize) -> Result<()> {
    if classes == 0 {
        return Err(invalid("classes", "must be at least 1"));
    }
    let labels = labels.to_kind(Kind::Int64);
    let (low, high) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
    if low < 0 || high >= classes as i64 {
        return Err(invalid(
            "labels",
            format!("must be in 0..{classes}, found labels from {low} to {high}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_inputs(train: &Tensor, labels: &Tensor, queries: &Tensor) -> Result<()> {
    let (t, l, q) = (train.size(), labels.size(), queries.size());
    let message = if t.len() != 2 || q.len() != 2 || l.len() != 1 {
        Some("expected train [N, D], labels [N] and queries [M, D]".to_owned())
    } else if t[0] == 0 {
        Some("the training set is empty".to_owned())
    } else if l[0] != t[0] {
        Some(format!("{} training items but {} labels", t[0], l[0]))
    } else if q[1] != t[1] {
        Some(format!(
            "queries are {}-dimensional, the training items {}",
            q[1], t[1]
        ))
    } else {
        None
    };
    match message {
        Some(message) => Err(Error::Shape {
            op: OP,
            message: format!("{message} (got {t:?}, {l:?}, {q:?})"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, Tensor, seeded};

    use super::*;

    #[test]
    fn votes_are_weighted_by_similarity() {
        // Two far neighbours of class 1 outvote nothing: one near neighbour of class 0 wins
        // with a low temperature, the majority wins with a high one.
        let train = Tensor::from_slice(&[1.0f32, 0.0, 0.6, 0.8, 0.6, 0.8]).view([3, 2]);
        let labels = Tensor::from_slice(&[0i64, 1, 1]);
        let query = Tensor::from_slice(&[1.0f32, 0.05]).view([1, 2]);
        let sharp = KnnClassifier::new(3, 0.05).unwrap();
        let flat = KnnClassifier::new(3, 100.0).unwrap();
        let p = |knn: KnnClassifier| {
            knn.predict(&train, &labels, &query, 2)
                .unwrap()
                .int64_value(&[0])
        };
        assert_eq!((p(sharp), p(flat)), (0, 1));
    }

    #[test]
    fn chunking_does_not_change_predictions() {
        let (train, labels, queries) = seeded(13, || {
            let cpu = (Kind::Float, Device::Cpu);
            let labels = Tensor::randint(5, [300], (Kind::Int64, Device::Cpu));
            (
                Tensor::randn([300, 8], cpu),
                labels,
                Tensor::randn([70, 8], cpu),
            )
        });
        let whole = KnnClassifier::new(20, 0.1).unwrap();
        let chunked = KnnClassifier { chunk: 16, ..whole };
        let a = whole.predict(&train, &labels, &queries, 5).unwrap();
        let b = chunked.predict(&train, &labels, &queries, 5).unwrap();
        assert!(a.equal(&b));
        assert_eq!(accuracy(&a, &b), 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(KnnClassifier::new(0, 0.1).is_err());
        assert!(KnnClassifier::new(5, 0.0).is_err());
        let knn = KnnClassifier::new(5, 0.1).unwrap();
        let train = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let labels = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let wrong = Tensor::zeros([2, 5], (Kind::Float, Device::Cpu));
        let err = knn.predict(&train, &labels, &wrong, 2).unwrap_err();
        assert!(err.to_string().contains("5-dimensional"), "{err}");
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        let none = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let err = knn.predict(&empty, &none, &train, 2).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
