//! Non-finite vectors, type-confused files and mismatched inputs are errors that say what is
//! wrong, never a wrong answer or a panic.

use contrastive_retrieval::{
    EmbeddingStore, Error, HnswConfig, HnswIndex, KMeans, KnnClassifier, Metric, Preprocess,
    StoreInfo, alignment, ari, clustering_accuracy, neighbour_recall, nmi, retrieval_metrics,
    search, uniformity,
};
use contrastive_tensor::{Kind, Tensor, seeded};

/// `n` random rows of width 8 with a NaN at `[bad, 3]` (when given).
fn rows(n: i64, bad: Option<i64>) -> Tensor {
    let x = seeded(3, || {
        Tensor::randn([n, 8], (Kind::Float, contrastive_tensor::Device::Cpu))
    });
    if let Some(row) = bad {
        let _ = x.get(row).get(3).fill_(f64::NAN);
    }
    x
}

fn info(n: usize) -> StoreInfo {
    StoreInfo {
        model: "m".into(),
        ids: (0..n).map(|i| format!("item{i}")).collect(),
        preprocess: Preprocess {
            size: 8,
            channels: 1,
            mean: vec![0.5],
            std: vec![0.25],
        },
        videos: None,
        labels: None,
        contents: None,
    }
}

/// The row an [`Error::NonFinite`] names.
fn bad_row<T: std::fmt::Debug>(result: Result<T, Error>) -> i64 {
    match result {
        Err(Error::NonFinite { row, .. }) => row,
        other => panic!("expected a non-finite error, got {other:?}"),
    }
}

#[test]
fn a_nan_row_is_refused_wherever_it_comes_in() {
    let clean = rows(300, None);
    let poisoned = rows(300, Some(41));
    let query = rows(5, None);
    // Exact search, for every metric and for k small (the bf16 prefilter) and large.
    for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
        for k in [1, 10, 200] {
            assert_eq!(bad_row(search(&poisoned, &query, k, metric)), 41);
            assert_eq!(bad_row(search(&clean, &rows(5, Some(2)), k, metric)), 2);
        }
    }
    // The store: at creation, at insert (nothing added), at query.
    assert_eq!(bad_row(EmbeddingStore::new(&poisoned, info(300))), 41);
    let mut store = EmbeddingStore::new(&clean, info(300)).unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("more{i}")).collect();
    assert_eq!(bad_row(store.add(&poisoned, ids, "m")), 41);
    assert_eq!(store.len(), 300);
    assert_eq!(
        bad_row(store.search(&rows(5, Some(4)), 3, Metric::Cosine)),
        4
    );
    // HNSW: build, add, query.
    let config = HnswConfig::default().with_seed(1);
    assert_eq!(bad_row(HnswIndex::build(&poisoned, config)), 41);
    let mut index = HnswIndex::build(&clean, config).unwrap();
    assert_eq!(bad_row(index.add(&poisoned)), 41);
    assert_eq!(bad_row(index.search(&rows(5, Some(1)), 3)), 1);
    // Clustering, the kNN classifier and the retrieval metrics.
    assert_eq!(bad_row(KMeans::new(3, 0).fit(&poisoned)), 41);
    let labels = Tensor::arange(300, (Kind::Int64, contrastive_tensor::Device::Cpu)).remainder(3);
    let knn = KnnClassifier::new(5, 0.07).unwrap();
    assert_eq!(bad_row(knn.predict(&poisoned, &labels, &query, 3)), 41);
    assert_eq!(
        bad_row(knn.predict(&clean, &labels, &rows(5, Some(0)), 3)),
        0
    );
    let all_nan = Tensor::full(
        [10, 8],
        f64::NAN,
        (Kind::Float, contrastive_tensor::Device::Cpu),
    );
    let ten = labels.narrow(0, 0, 10);
    assert_eq!(
        bad_row(retrieval_metrics(&all_nan, &ten, Metric::Cosine, &[1])),
        0
    );
}

#[test]
fn a_stored_file_of_another_dtype_is_refused_not_reinterpreted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.safetensors");
    EmbeddingStore::new(&rows(20, None), info(20))
        .unwrap()
        .save(&path)
        .unwrap();
    // F32 -> I32 in the header keeps every size and offset valid.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"\"F32\"")
        .expect("the header names the dtype");
    bytes[at + 1] = b'I';
    std::fs::write(&path, &bytes).unwrap();
    let err = EmbeddingStore::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("damaged"),
        "the recorded SHA-256 catches it: {err}"
    );
    // With the SHA-256's key damaged too, our metadata without it is refused.
    let key = contrastive_tensor::DIGEST_KEY.as_bytes();
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at + key.len() - 1] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    let err = EmbeddingStore::load(&path).unwrap_err().to_string();
    assert!(err.contains("no contrastive.sha256"), "{err}");
}

#[test]
fn the_knn_classifier_checks_its_labels() {
    let (train, query) = (rows(30, None), rows(4, None));
    let knn = KnnClassifier::new(5, 0.07).unwrap();
    let labels = |values: &[i64]| Tensor::from_slice(&values.repeat(10));
    for (labels, classes, expected) in [
        (labels(&[0, 1, 3]), 3, "must be in 0..3"),
        (labels(&[0, -1, 2]), 3, "must be in 0..3"),
        (labels(&[0, 0, 0]), 0, "classes"),
    ] {
        let err = knn
            .predict(&train, &labels, &query, classes)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn metrics_of_mismatched_inputs_are_errors() {
    let (three, two) = ([0usize, 1, 1], [0usize, 1]);
    assert!(nmi(&three, &two).is_err());
    assert!(ari(&three, &two).is_err());
    assert!(clustering_accuracy(&three, &two).is_err());
    assert!(clustering_accuracy(&[], &[]).is_err());
    // As scikit-learn: fewer than two items are a perfect match.
    assert_eq!(ari(&[], &[]).unwrap(), 1.0);
    assert_eq!(ari(&[4], &[0]).unwrap(), 1.0);
    let (a, b) = (rows(6, None), rows(5, None));
    assert!(alignment(&a, &b, 2.0).is_err());
    assert!(uniformity(&rows(1, None), 2.0).is_err());
    let found = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
    let exact = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
    assert!(neighbour_recall(&found, &exact).is_err());
}
