//! A run's charts (`loss.png`, `knn.png`, `recall.png`), drawn from `metrics.jsonl` with
//! `contrastive_draw`.

use std::path::Path;

use contrastive_draw::{Series, line_chart};

use crate::Result;
use crate::metrics::Record;

/// Writes `loss.png` (every step's loss and its moving average) and, when the run measured
/// them, `knn.png` (kNN top-1 per epoch) and `recall.png` (video: same-video recall@1 per
/// epoch) into `run_dir`.
pub fn plot_run(run_dir: &Path, records: &[Record]) -> Result<()> {
    let losses: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step { step, loss, .. } => Some((*step as f64, *loss)),
            Record::Epoch { .. } => None,
        })
        .collect();
    let window = (losses.len() / 50).max(1);
    let mut sum = 0.0;
    let smooth = losses
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= losses[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect();
    line_chart(
        &run_dir.join("loss.png"),
        "Training loss",
        "step",
        "loss",
        &[
            Series {
                label: "per step".into(),
                color: [170, 200, 235],
                points: losses,
            },
            Series {
                label: format!("mean of {window}"),
                color: [20, 80, 160],
                points: smooth,
            },
        ],
    )?;
    // (epoch, kNN top-1, same-video recall@1) of every epoch record.
    let epochs: Vec<[Option<f64>; 3]> = records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch {
                epochs_done,
                knn_top1,
                video_recall_at_1,
                ..
            } => Some([Some(*epochs_done as f64), *knn_top1, *video_recall_at_1]),
            Record::Step { .. } => None,
        })
        .collect();
    let percent = |column: usize| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|e| Some((e[0]?, e[column]? * 100.0)))
            .collect()
    };
    let charts = [
        (
            "knn.png",
            "kNN top-1 on the held-out split",
            "kNN top-1",
            percent(1),
        ),
        (
            "recall.png",
            "Same-video recall@1 on held-out videos",
            "recall@1",
            percent(2),
        ),
    ];
    for (file, title, label, points) in charts {
        if !points.is_empty() {
            line_chart(
                &run_dir.join(file),
                title,
                "epoch",
                "%",
                &[Series {
                    label: label.into(),
                    color: [200, 70, 30],
                    points,
                }],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<Record> = (1..=100)
            .map(|s| Record::Step {
                step: s,
                epoch: s / 50,
                loss: 5.0 / (s as f64).sqrt(),
                lr: 0.1,
                views_per_s: 1.0,
            })
            .collect();
        records.push(Record::Epoch {
            step: 50,
            epochs_done: 1,
            mean_loss: 1.0,
            train_s: 1.0,
            knn_top1: Some(0.7),
            video_recall_at_1: Some(0.3),
            eval_s: Some(1.0),
        });
        records.push(Record::Epoch {
            step: 100,
            epochs_done: 2,
            mean_loss: 0.5,
            train_s: 1.0,
            knn_top1: Some(0.8),
            video_recall_at_1: Some(0.4),
            eval_s: Some(1.0),
        });
        plot_run(dir.path(), &records).unwrap();
        for name in ["loss.png", "knn.png", "recall.png"] {
            let image = image::open(dir.path().join(name)).unwrap().to_rgb8();
            assert_eq!(image.dimensions(), contrastive_draw::CHART_SIZE);
            // Something besides the white background was drawn in the plot area.
            let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
            assert!(inked > 1000, "{name}: {inked} pixels drawn");
        }
    }
}
