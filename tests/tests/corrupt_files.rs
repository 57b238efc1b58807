//! Every file reader against damaged files: random truncations, bit flips anywhere and bit
//! flips in the header. No reader may panic. The files we write ourselves (model,
//! checkpoint, store, HNSW index: safetensors with a recorded SHA-256) must give either an
//! error or exactly the original. Formats that carry no checksum of their own (IDX, CIFAR)
//! must refuse every cut that leaves no whole file, and may read a flipped bit as another
//! value (the dataset cache checks their SHA-256 on download); a TOML config must not
//! panic (an edited value may still be a valid config).
//!
//! `CONTRASTIVE_FUZZ_CASES` sets the cases per reader (default 150 per kind of damage);
//! the run prints what it tried.

// The run reports what it tried, as the issue asks (cases and outcomes per reader).
#![allow(clippy::print_stderr)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use contrastive_data::{read_cifar_files, read_idx};
use contrastive_e2e::write_shapes;
use contrastive_models::load_model;
use contrastive_retrieval::{EmbeddingStore, HnswConfig, HnswIndex, Preprocess, StoreInfo};
use contrastive_tensor::{Device, Kind, Tensor, seeded};
use contrastive_trainer::{Checkpoint, TrainConfig, Trainer, checkpoint_path};

/// How a file was damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    /// Cut to a random shorter length.
    Truncate,
    /// 1 to 3 random bits flipped anywhere.
    Flip,
    /// 1 to 3 random bits flipped within the first `header` bytes.
    Header,
}

/// What reading a damaged file gave.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Error,
    Original,
    /// Read without an error, but not the original.
    Different,
    Panic,
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

fn damage(original: &[u8], how: Damage, header: usize, rng: &mut Rng) -> Vec<u8> {
    let mut bytes = original.to_vec();
    match how {
        Damage::Truncate => bytes.truncate(rng.below(bytes.len())),
        Damage::Flip | Damage::Header => {
            let span = if how == Damage::Header {
                header.min(bytes.len())
            } else {
                bytes.len()
            };
            for _ in 0..=rng.below(3) {
                bytes[rng.below(span)] ^= 1 << rng.below(8);
            }
        }
    }
    bytes
}

/// What a reader must do with a damaged file besides not panicking.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Any change is an error (the file records a checksum).
    Exact,
    /// A cut is an error, except one to a whole number of `record`-byte records (0: none),
    /// which is a smaller valid file. Bit flips may read as other values: an IDX header
    /// holds only sizes, and one whose sizes still multiply to the same count (`[5, 4, 3]`
    /// edited to `[5, 6, 2]`) cannot be told from the original without a checksum.
    Sized { record: usize },
    /// Only no panic.
    NoPanic,
}

/// Reads a file back and says whether it is the original (`Ok(true)`).
type ReadBack<'a> = Box<dyn Fn(&Path) -> Result<bool, String> + 'a>;

/// One reader under test: its file, how long its header is (0: none), and how to read it
/// back and compare with the original (`Ok(true)`: the same).
struct Reader<'a> {
    name: &'static str,
    path: &'a Path,
    header: usize,
    check: Check,
    read: ReadBack<'a>,
}

impl<'a> Reader<'a> {
    /// A reader of one of our safetensors files (checksummed: any damage is an error).
    fn ours(name: &'static str, path: &'a Path, read: ReadBack<'a>) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        Reader {
            name,
            path,
            header,
            check: Check::Exact,
            read,
        }
    }
}

fn cases() -> usize {
    std::env::var("CONTRASTIVE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

/// Runs every kind of damage `cases()` times on `reader`; returns the failures.
fn fuzz(reader: &Reader, rng: &mut Rng) -> Vec<String> {
    let original = std::fs::read(reader.path).unwrap();
    assert_eq!((reader.read)(reader.path), Ok(true), "{}", reader.name);
    let mut failures = Vec::new();
    let mut tally = std::collections::BTreeMap::new();
    for how in [Damage::Truncate, Damage::Flip, Damage::Header] {
        if how == Damage::Header && reader.header == 0 {
            continue;
        }
        for case in 0..cases() {
            let bytes = damage(&original, how, reader.header, rng);
            std::fs::write(reader.path, &bytes).unwrap();
            let outcome = match catch_unwind(AssertUnwindSafe(|| (reader.read)(reader.path))) {
                Err(_) => Outcome::Panic,
                Ok(Err(_)) => Outcome::Error,
                Ok(Ok(true)) => Outcome::Original,
                Ok(Ok(false)) => Outcome::Different,
            };
            let wrong = match (outcome, reader.check) {
                (Outcome::Panic, _) => true,
                (_, Check::NoPanic) | (Outcome::Error, _) => false,
                (Outcome::Original, _) => how == Damage::Truncate,
                (Outcome::Different, Check::Exact) => true,
                (Outcome::Different, Check::Sized { record }) => {
                    how == Damage::Truncate && (record == 0 || !bytes.len().is_multiple_of(record))
                }
            };
            if wrong {
                failures.push(format!("{} {how:?} case {case}: {outcome:?}", reader.name));
            }
            *tally.entry(format!("{how:?} {outcome:?}")).or_insert(0) += 1;
        }
    }
    std::fs::write(reader.path, &original).unwrap();
    eprintln!("{}: {tally:?}", reader.name);
    failures
}

/// A tiny trained run (2 steps) in `root/run`, for its checkpoint and model.
fn tiny_run(root: &Path) -> std::path::PathBuf {
    write_shapes(&root.join("data"), 8, 12, 1);
    let out = root.join("run");
    let text = format!(
        "[run]\nout = {:?}\nepochs = 1\nmax_steps = 2\nthreads = 1\n[data]\ndataset = \"folder\"\n\
         dir = {:?}\nbatch_size = 16\naugment = \"simclr\"\n[model]\nhead_hidden = 8\nhead_out = 4\n\
         [eval]\nfinal = false\n[method]\nname = \"moco-v2\"\nqueue_size = 32\n\
         [optimizer]\nname = \"sgd\"\nlr = 0.05\n",
        out.display().to_string(),
        root.join("data").display().to_string(),
    );
    let config = TrainConfig::from_toml(&text).unwrap();
    Trainer::new(config, false)
        .unwrap()
        .run(&mut (), &AtomicBool::new(false))
        .unwrap();
    out
}

/// Whether two tensor maps hold the same names, kinds, shapes and values.
fn same_tensors<'a>(
    a: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
    b: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
) -> bool {
    let (mut a, mut b): (Vec<_>, Vec<_>) = (a.into_iter().collect(), b.into_iter().collect());
    a.sort_by_key(|(n, _)| n.as_str());
    b.sort_by_key(|(n, _)| n.as_str());
    a.len() == b.len()
        && a.iter().zip(&b).all(|((na, ta), (nb, tb))| {
            na == nb && ta.kind() == tb.kind() && ta.size() == tb.size() && ta.equal(tb)
        })
}

#[test]
fn damaged_files_are_refused_or_read_exactly_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run = tiny_run(root);
    let checkpoint = checkpoint_path(&run);
    let saved = Checkpoint::read(&checkpoint).unwrap();
    let model_path = run.join("model.safetensors");
    let (model_vs, model) = load_model(&model_path, Device::Cpu).unwrap();

    let rows = seeded(4, || Tensor::randn([64, 8], (Kind::Float, Device::Cpu)));
    let info = StoreInfo {
        model: "m".into(),
        ids: (0..64).map(|i| format!("item{i}")).collect(),
        preprocess: Preprocess {
            size: 8,
            channels: 1,
            mean: vec![0.5],
            std: vec![0.25],
        },
        videos: None,
        labels: None,
        contents: None,
    };
    let store_path = root.join("store.safetensors");
    EmbeddingStore::new(&rows, info.clone())
        .unwrap()
        .save(&store_path)
        .unwrap();
    let index_path = root.join("index.hnsw");
    let index = HnswIndex::build(&rows, HnswConfig::default().with_seed(2)).unwrap();
    index.save(&index_path).unwrap();
    let queries = rows.narrow(0, 0, 8);
    let expected = index.search(&queries, 5).unwrap();

    let idx_path = root.join("images.idx");
    let mut idx = vec![0, 0, 0x08, 3];
    for d in [5u32, 4, 3] {
        idx.extend_from_slice(&d.to_be_bytes());
    }
    idx.extend((0..60u8).map(|v| v.wrapping_mul(37)));
    std::fs::write(&idx_path, &idx).unwrap();
    let idx_original = read_idx(&idx_path).unwrap();

    let cifar_path = root.join("data_batch_1.bin");
    // Three records: a label byte, then 3072 pixel bytes.
    let cifar: Vec<u8> = (0..3 * 3073)
        .map(|i| match i % 3073 {
            0 => (i / 3073) as u8,
            p => (p * 7 % 251) as u8,
        })
        .collect();
    std::fs::write(&cifar_path, &cifar).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let read_cifar = |path: &Path| {
        read_cifar_files(&[path.to_path_buf()], 1, 0, names.clone()).map(|d| {
            use contrastive_data::Dataset;
            (0..d.len())
                .map(|i| d.get(i).map(|s| (s.label, s.image)))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    let cifar_original = read_cifar(&cifar_path).unwrap().unwrap();

    let config_path = root.join("config.toml");
    std::fs::copy(run.join("config.toml"), &config_path).unwrap();
    let config_original = TrainConfig::load(&config_path, &[]).unwrap();

    let readers = [
        Reader::ours(
            "checkpoint",
            &checkpoint,
            Box::new(|p| {
                let c = Checkpoint::read(p).map_err(|e| e.to_string())?;
                Ok(c.position == saved.position && same_tensors(&c.tensors, &saved.tensors))
            }),
        ),
        Reader::ours(
            "model",
            &model_path,
            Box::new(|p| {
                let (vs, m) = load_model(p, Device::Cpu).map_err(|e| e.to_string())?;
                let (a, b) = (vs.variables(), model_vs.variables());
                Ok(m.config() == model.config() && same_tensors(&a, &b))
            }),
        ),
        Reader::ours(
            "store",
            &store_path,
            Box::new(|p| {
                let s = EmbeddingStore::load(p).map_err(|e| e.to_string())?;
                Ok(*s.info() == info && s.embeddings().equal(&rows))
            }),
        ),
        Reader::ours(
            "hnsw index",
            &index_path,
            Box::new(|p| {
                let i = HnswIndex::load(p).map_err(|e| e.to_string())?;
                let found = i.search(&queries, 5).map_err(|e| e.to_string())?;
                Ok(i.config() == index.config()
                    && found.indices.equal(&expected.indices)
                    && found.scores.equal(&expected.scores))
            }),
        ),
        Reader {
            name: "idx",
            path: &idx_path,
            header: 16,
            check: Check::Sized { record: 0 },
            read: Box::new(|p| Ok(read_idx(p).map_err(|e| e.to_string())? == idx_original)),
        },
        Reader {
            name: "cifar",
            path: &cifar_path,
            header: 0,
            check: Check::Sized { record: 3073 },
            read: Box::new(|p| {
                let d = read_cifar(p).map_err(|e| e.to_string())?;
                Ok(d.map_err(|e| e.to_string())? == cifar_original)
            }),
        },
        Reader {
            name: "config toml",
            path: &config_path,
            header: 0,
            check: Check::NoPanic,
            read: Box::new(|p| {
                let c = TrainConfig::load(p, &[]).map_err(|e| e.to_string())?;
                Ok(c == config_original)
            }),
        },
    ];
    // Silence the default hook: panics are counted, not printed.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0x5eed);
    let mut failures = Vec::new();
    for reader in &readers {
        failures.extend(fuzz(reader, &mut rng));
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "{} readers x 3 kinds of damage x {} cases: {} failures",
        readers.len(),
        cases(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
