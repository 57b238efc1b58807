//! Metrics against scikit-learn, pytorch-metric-learning, SciPy and PyTorch on fixed inputs
//! (`tests/fixtures/make_fixtures.py` made `reference.json`).

use contrastive_retrieval::{
    KMeans, Metric, alignment, ari, clustering_accuracy, nmi, retrieval_metrics, uniformity,
};
use contrastive_tensor::Tensor;
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(value: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(value.clone()).unwrap();
    let (n, d) = (rows.len() as i64, rows[0].len() as i64);
    Tensor::from_slice(&rows.concat()).view([n, d])
}

fn ids(value: &Value) -> Vec<usize> {
    serde_json::from_value(value.clone()).unwrap()
}

fn close(name: &str, ours: f64, theirs: &Value) {
    let theirs = theirs.as_f64().unwrap();
    assert!(
        (ours - theirs).abs() < 1e-6,
        "{name}: ours {ours}, reference {theirs}"
    );
}

#[test]
fn clustering_scores_match_scikit_learn_and_scipy() {
    let r = reference();
    let (labels, clusters) = (ids(&r["labels"]), ids(&r["clusters"]));
    close("nmi", nmi(&labels, &clusters).unwrap(), &r["nmi"]);
    close("ari", ari(&labels, &clusters).unwrap(), &r["ari"]);
    close(
        "accuracy",
        clustering_accuracy(&labels, &clusters).unwrap(),
        &r["clustering_accuracy"],
    );
}

#[test]
fn retrieval_scores_match_pytorch_metric_learning() {
    let r = reference();
    let x = matrix(&r["embeddings"]);
    let labels: Vec<i64> = ids(&r["labels"]).into_iter().map(|l| l as i64).collect();
    // pml's AccuracyCalculator searches by L2 distance on the embeddings as given.
    let report = retrieval_metrics(&x, &Tensor::from_slice(&labels), Metric::L2, &[1, 10]).unwrap();
    close("precision@1", report.precision_at_1, &r["precision_at_1"]);
    close("R-precision", report.r_precision, &r["r_precision"]);
    close("MAP@R", report.map_at_r, &r["map_at_r"]);
    assert_eq!(report.recall_at_k[0], (1, report.precision_at_1));
    assert!(report.recall_at_k[1].1 >= report.precision_at_1);
}

#[test]
fn kmeans_reaches_scikit_learns_inertia() {
    let r = reference();
    let x = matrix(&r["embeddings"]);
    let ours = KMeans {
        inits: 10,
        ..KMeans::new(6, 0)
    }
    .fit(&x)
    .unwrap();
    let theirs = r["kmeans_inertia"].as_f64().unwrap();
    // Different seeds may find another local optimum; ours must be as good within 0.5 %.
    assert!(
        ours.inertia <= theirs * 1.005,
        "ours {} vs scikit-learn {theirs}",
        ours.inertia
    );
    let labels = ids(&r["labels"]);
    assert!(nmi(&labels, &ours.labels).unwrap() > 0.8);
}

#[test]
fn alignment_and_uniformity_match_the_papers_code() {
    let r = reference();
    let (x, paired) = (matrix(&r["embeddings"]), matrix(&r["paired"]));
    let a = alignment(&x, &paired, 2.0).unwrap();
    assert!((a - r["alignment"].as_f64().unwrap()).abs() < 1e-5, "{a}");
    let u = uniformity(&x, 2.0).unwrap();
    assert!((u - r["uniformity"].as_f64().unwrap()).abs() < 1e-5, "{u}");
}
