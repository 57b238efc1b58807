//! `metrics.jsonl`: one JSON object per line, a record per step and per epoch.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
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
    #[cfg(test)]
    fn step(&self) -> u64 {
        match self {
            Record::Step { step, .. } | Record::Epoch { step, .. } => *step,
        }
    }

    /// Whether a checkpoint taken after `steps` steps and `epochs` whole epochs covers this
    /// record (a record it does not cover is redone by the resumed run).
    fn covered_by(&self, steps: u64, epochs: u64) -> bool {
        match self {
            Record::Step { step, .. } => *step <= steps,
            Record::Epoch { epochs_done, .. } => *epochs_done <= epochs,
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
    /// Opens `path` for appending, for a run whose checkpoint holds `steps` steps and
    /// `epochs` whole epochs. Records the checkpoint does not cover (written by an
    /// interrupted run after it), and a last line cut short by a kill, are cut off the end,
    /// so a resumed run's log has each step and epoch once. The lines kept are never
    /// rewritten: the file is only shortened (one `ftruncate`) and then appended to.
    pub fn open(path: &Path, steps: u64, epochs: u64) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| Error::io(path, e))?;
        let keep = kept_prefix(&text, steps, epochs);
        if keep < text.len() {
            file.set_len(keep as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(path, e))?;
        }
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

/// The length of the longest prefix of `text` made of whole lines, each a record that a
/// checkpoint of `steps` steps and `epochs` epochs covers.
fn kept_prefix(text: &[u8], steps: u64, epochs: u64) -> usize {
    let mut end = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let whole = line.ends_with(b"\n");
        let kept = whole
            && serde_json::from_slice::<Record>(line)
                .is_ok_and(|record| record.covered_by(steps, epochs));
        if !kept {
            break;
        }
        end += line.len();
    }
    end
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
        let mut log = MetricsLog::open(&path, 0, 0).unwrap();
        for s in 1..=5 {
            log.write(&step(s)).unwrap();
        }
        drop(log);
        // A line cut short by a crash.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"step\",\"st");
        std::fs::write(&path, text).unwrap();
        let mut log = MetricsLog::open(&path, 3, 0).unwrap();
        log.write(&step(4)).unwrap();
        let steps: Vec<u64> = read(&path).unwrap().iter().map(Record::step).collect();
        assert_eq!(steps, [1, 2, 3, 4]);
    }

    #[test]
    fn an_epoch_record_is_kept_only_when_the_checkpoint_has_that_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let epoch = Record::Epoch {
            step: 2,
            epochs_done: 1,
            mean_loss: 0.75,
            train_s: 1.0,
            knn_top1: None,
            video_recall_at_1: None,
            eval_s: None,
        };
        let mut log = MetricsLog::open(&path, 0, 0).unwrap();
        for record in [step(1), step(2), epoch.clone()] {
            log.write(&record).unwrap();
        }
        drop(log);
        // Killed after logging the epoch's end, before its checkpoint: the resumed run
        // ends the epoch again, so the record goes.
        MetricsLog::open(&path, 2, 0).unwrap();
        assert_eq!(read(&path).unwrap(), [step(1), step(2)]);
        let mut log = MetricsLog::open(&path, 2, 0).unwrap();
        log.write(&epoch).unwrap();
        MetricsLog::open(&path, 2, 1).unwrap();
        assert_eq!(read(&path).unwrap(), [step(1), step(2), epoch]);
    }

    #[test]
    fn reopening_keeps_the_kept_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // Lines as another writer (or an older version) formatted them: kept as they are.
        let first = "{\"kind\":\"step\",\"step\":1,\"epoch\":0,\"loss\":4.59511985013459,\
                     \"lr\":0.1,\"views_per_s\":100.0}\n";
        let second = first.replace("\"step\":1", "\"step\":2");
        std::fs::write(&path, format!("{first}{second}")).unwrap();
        let mut log = MetricsLog::open(&path, 1, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        log.write(&step(2)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(first), "{text}");
        assert_eq!(read(&path).unwrap()[1], step(2));
    }

    #[test]
    fn logged_floats_read_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0, 0).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut written = Vec::new();
        for s in 1..=2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let loss = f64::from_bits(0x3ff0_0000_0000_0000 | (state >> 12)) * 3.0;
            let record = Record::Step {
                step: s,
                epoch: 0,
                loss,
                lr: 1.0 / (s as f64 + 0.3),
                views_per_s: loss * 1e4,
            };
            log.write(&record).unwrap();
            written.push(record);
        }
        assert_eq!(read(&path).unwrap(), written);
    }
}
