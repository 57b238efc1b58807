//! `metrics.jsonl`: one JSON object per line, a record per step and per epoch.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// After a training step.
    Step {
        /// Steps done in all.
        step: u64,
        /// The epoch (0-based).
        epoch: u64,
        /// The step's loss.
        loss: f64,
        /// The learning rate used.
        lr: f64,
        /// Views per second over the recent steps.
        views_per_s: f64,
    },
    /// After an epoch.
    Epoch {
        /// Steps done in all.
        step: u64,
        /// The epoch that ended (1-based count of epochs done).
        epochs_done: u64,
        /// Mean loss over the epoch's steps.
        mean_loss: f64,
        /// Training seconds of the epoch (without the evaluation).
        train_s: f64,
        /// kNN top-1 on the held-out split, when measured.
        knn_top1: Option<f64>,
        /// For video: same-video recall@1 of the held-out frames, when measured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_recall_at_1: Option<f64>,
        /// Seconds the kNN evaluation took.
        eval_s: Option<f64>,
    },
}

impl Record {
    fn step(&self) -> u64 {
        match self {
            Record::Step { step, .. } | Record::Epoch { step, .. } => *step,
        }
    }
}

/// Appends records to a run's `metrics.jsonl`, one flushed line each.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending. Records after `keep_until` steps (left by an interrupted
    /// run after its last checkpoint) are dropped, so a resumed run's log has no repeats.
    pub fn open(path: &Path, keep_until: u64) -> Result<Self> {
        let kept: Vec<Record> = read(path)?
            .into_iter()
            .filter(|r| r.step() <= keep_until)
            .collect();
        let mut text = String::new();
        for record in &kept {
            text.push_str(&serde_json::to_string(record).expect("records serialise"));
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Every record of a `metrics.jsonl` (none when it does not exist). A last line cut short by
/// a crash is ignored.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if let Ok(record) = serde_json::from_str(&line) {
            records.push(record);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64) -> Record {
        Record::Step {
            step,
            epoch: 0,
            loss: 1.0 / step as f64,
            lr: 0.1,
            views_per_s: 100.0,
        }
    }

    #[test]
    fn reopening_drops_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        for s in 1..=5 {
            log.write(&step(s)).unwrap();
        }
        drop(log);
        // A line cut short by a crash.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"step\",\"st");
        std::fs::write(&path, text).unwrap();
        let mut log = MetricsLog::open(&path, 3).unwrap();
        log.write(&step(4)).unwrap();
        let steps: Vec<u64> = read(&path).unwrap().iter().map(Record::step).collect();
        assert_eq!(steps, [1, 2, 3, 4]);
    }
}
