//! `.safetensors` checkpoints: exact round trips, strict loading, atomic saving.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use contrastive_tensor::{
    Device, Error, Kind, SafetensorsFile, Tensor, load_var_store, nn, save_safetensors,
    save_var_store, stage_safetensors,
};

/// A var store holding a conv layer, a batch norm (with its buffers) and a linear layer.
fn store(hidden: i64) -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ = nn::conv2d(&root / "conv1", 1, 4, 3, Default::default());
    let _ = nn::batch_norm2d(&root / "bn1", 4, Default::default());
    let _ = nn::linear(&root / "fc", 4, hidden, Default::default());
    vs
}

fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn every_kind_round_trips_exactly_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.safetensors");
    let base = Tensor::randn([3, 5], (Kind::Float, Device::Cpu)) * 100.0;
    let mut all: Vec<(String, Tensor)> = [
        Kind::Float,
        Kind::Double,
        Kind::Half,
        Kind::BFloat16,
        Kind::Uint8,
        Kind::Int8,
        Kind::Int16,
        Kind::Int,
        Kind::Int64,
        Kind::Bool,
    ]
    .iter()
    .map(|&k| (format!("{k:?}"), base.to_kind(k)))
    .collect();
    // A transposed (non-contiguous) tensor and a scalar are stored by value too.
    all.push(("transposed".into(), base.tr()));
    all.push(("scalar".into(), Tensor::from(3.5f64)));
    let named: Vec<(&str, &Tensor)> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let metadata = BTreeMap::from([("model".to_string(), "small-cnn".to_string())]);
    save_safetensors(&path, &named, &metadata).unwrap();

    let back = SafetensorsFile::read(&path).unwrap();
    assert_eq!(back.metadata, metadata);
    assert_eq!(back.tensors.len(), all.len());
    for (name, tensor) in &all {
        let loaded = &back.tensors[name];
        assert_eq!(
            (loaded.kind(), loaded.size()),
            (tensor.kind(), tensor.size()),
            "{name}"
        );
        assert!(loaded.equal(tensor), "{name} changed in the round trip");
    }
}

#[test]
fn a_var_store_saves_and_loads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let source = store(6);
    save_var_store(&source, &path, &no_metadata()).unwrap();
    let names: Vec<String> = SafetensorsFile::read(&path)
        .unwrap()
        .tensors
        .into_keys()
        .collect();
    assert!(names.contains(&"conv1.weight".to_string()), "{names:?}");
    assert!(
        names.contains(&"bn1.running_mean".to_string()),
        "buffers are saved: {names:?}"
    );

    let target = store(6);
    load_var_store(&target, &path).unwrap();
    let (a, b) = (source.variables(), target.variables());
    for (name, value) in &a {
        assert!(value.equal(&b[name]), "{name} differs after loading");
    }
}

#[test]
fn a_missing_tensor_is_named_and_nothing_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    let source = store(6);
    let vars = source.variables();
    let named: Vec<(&str, &Tensor)> = vars
        .iter()
        .filter(|(n, _)| *n != "fc.bias")
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    save_safetensors(&path, &named, &no_metadata()).unwrap();

    let target = store(6);
    let before = target.variables()["conv1.weight"].copy();
    let err = load_var_store(&target, &path).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensors { names, .. } if names == &["fc.bias"]),
        "{err}"
    );
    assert!(err.to_string().contains("fc.bias") && err.to_string().contains("partial.safetensors"));
    assert!(
        target.variables()["conv1.weight"].equal(&before),
        "a failed load changed the model"
    );
}

#[test]
fn an_unexpected_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.safetensors");
    let extra = Tensor::zeros([1], (Kind::Int64, Device::Cpu));
    let source = store(6);
    let vars = source.variables();
    let mut named: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
    named.push(("bn1.num_batches_tracked", &extra));
    save_safetensors(&path, &named, &no_metadata()).unwrap();

    let target = store(6);
    let err = load_var_store(&target, &path).unwrap_err();
    assert!(
        err.to_string().contains("unexpected")
            && err.to_string().contains("bn1.num_batches_tracked"),
        "{err}"
    );
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.safetensors");
    let source = store(8);
    save_var_store(&source, &path, &no_metadata()).unwrap();

    let target = store(6);
    let err = load_var_store(&target, &path).unwrap_err();
    match &err {
        Error::TensorShapeMismatch {
            name,
            found,
            expected,
            ..
        } => {
            assert!(name.starts_with("fc."), "{name}");
            assert_eq!(found[0], 8);
            assert_eq!(expected[0], 6);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("[8") && text.contains("[6"), "{text}");
}

#[test]
fn truncated_and_garbage_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let w = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    save_safetensors(&path, &[("w", &w)], &no_metadata()).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = SafetensorsFile::read(&truncated).unwrap_err();
    assert!(matches!(err, Error::InvalidCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    assert!(matches!(
        SafetensorsFile::read(&garbage),
        Err(Error::InvalidCheckpoint { .. })
    ));

    let missing = SafetensorsFile::read(dir.path().join("absent.safetensors")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }) && missing.to_string().contains("absent"));
}

#[test]
fn a_failed_save_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-folder").join("w.safetensors");
    let w = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let err = save_safetensors(&path, &[("w", &w)], &no_metadata()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // An abandoned stage cleans up after itself.
    let ok_path = dir.path().join("w.safetensors");
    let stage = stage_safetensors(&ok_path, &[("w", &w)], &no_metadata()).unwrap();
    let temp = stage.temp_path().to_path_buf();
    assert!(temp.exists());
    drop(stage);
    assert!(!temp.exists() && !ok_path.exists());
}

const CHILD_ENV: &str = "CONTRASTIVE_TEST_STAGE_THEN_HANG";
const KILL_TEST: &str = "a_save_killed_before_the_rename_leaves_the_previous_file_intact";

/// In the child process: stage a new version of `target`, say so, and wait to be killed.
#[allow(clippy::print_stdout)]
fn stage_then_hang(target: &Path) -> ! {
    let newer = Tensor::full([1000], 2.0, (Kind::Float, Device::Cpu));
    let stage = stage_safetensors(target, &[("w", &newer)], &no_metadata()).unwrap();
    println!("STAGED {}", stage.temp_path().display());
    std::thread::sleep(std::time::Duration::from_secs(120));
    std::process::exit(3);
}

#[test]
fn a_save_killed_before_the_rename_leaves_the_previous_file_intact() {
    if let Some(target) = std::env::var_os(CHILD_ENV) {
        stage_then_hang(Path::new(&target));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let older = Tensor::full([1000], 1.0, (Kind::Float, Device::Cpu));
    save_safetensors(&path, &[("w", &older)], &no_metadata()).unwrap();

    // Re-run this test binary as a child that stages a save and is then killed (SIGKILL: no
    // destructor runs), as a crash or `kill -9` between writing and renaming would.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", KILL_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let staged = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once("STAGED ").map(|(_, temp)| temp.to_owned()));
    child.kill().unwrap();
    child.wait().unwrap();
    let temp = staged.expect("the child staged its save");

    assert!(
        Path::new(&temp).exists(),
        "the killed save left its temporary file"
    );
    let survived = SafetensorsFile::read(&path).unwrap();
    assert!(
        survived.tensors["w"].equal(&older),
        "the previous checkpoint was damaged"
    );
    // The next save goes through despite the leftover.
    let newest = Tensor::full([1000], 3.0, (Kind::Float, Device::Cpu));
    save_safetensors(&path, &[("w", &newest)], &no_metadata()).unwrap();
    assert!(SafetensorsFile::read(&path).unwrap().tensors["w"].equal(&newest));
}

#[test]
fn a_mapped_file_gives_the_same_tensors_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    let big = Tensor::randn([1000, 64], (Kind::Float, Device::Cpu));
    let bytes = Tensor::from_slice(&[1u8, 2, 3]);
    let ids = Tensor::from_slice(&[7i64, -1]);
    let meta = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    save_safetensors(
        &path,
        &[("big", &big), ("odd", &bytes), ("ids", &ids)],
        &meta,
    )
    .unwrap();
    let mapped = SafetensorsFile::map(&path).unwrap();
    let read = SafetensorsFile::read(&path).unwrap();
    assert_eq!(mapped.metadata, read.metadata);
    for (name, tensor) in &read.tensors {
        let m = &mapped.tensors[name];
        assert_eq!(m.kind(), tensor.kind(), "{name}");
        assert!(m.equal(tensor), "{name}");
    }
    // Writing to a mapped tensor changes neither the file nor other mappings.
    let mut first = mapped.tensors["big"].get(0);
    let _ = first.fill_(5.0);
    assert!(SafetensorsFile::map(&path).unwrap().tensors["big"].equal(&big));

    let truncated = dir.path().join("truncated.safetensors");
    let all = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &all[..all.len() - 100]).unwrap();
    let err = SafetensorsFile::map(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors"), "{err}");
    std::fs::write(&truncated, b"abc").unwrap();
    assert!(SafetensorsFile::map(&truncated).is_err());
    assert!(SafetensorsFile::map(dir.path().join("absent")).is_err());
}

#[test]
fn a_tensor_of_another_kind_or_holding_nan_is_refused_and_nothing_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let source = store(6);
    let target = store(6);
    let before = target.variables()["conv1.weight"].copy();
    let vars = source.variables();
    // The same bytes under another dtype (a header edited F32 -> I32), and a NaN weight.
    let reinterpreted = vars["fc.weight"].view_dtype(Kind::Int);
    let poisoned = vars["fc.bias"].copy();
    let _ = poisoned.get(2).fill_(f64::NAN);
    for (name, replacement, expected) in [
        (
            "fc.weight",
            &reinterpreted,
            "is stored as Int but Float is expected",
        ),
        ("fc.bias", &poisoned, "holds 1 non-finite value(s)"),
    ] {
        let path = dir.path().join(format!("{name}.safetensors"));
        let named: Vec<(&str, &Tensor)> = vars
            .iter()
            .map(|(n, t)| (n.as_str(), if n == name { replacement } else { t }))
            .collect();
        save_safetensors(&path, &named, &no_metadata()).unwrap();
        let err = load_var_store(&target, &path).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(expected), "{err}");
        assert!(target.variables()["conv1.weight"].equal(&before));
    }
}

#[test]
fn take_checks_the_kind_and_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let ok = Tensor::from_slice(&[1.0f32, 2.0]);
    let bad = Tensor::from_slice(&[1.0f32, f32::INFINITY]);
    save_safetensors(&path, &[("ok", &ok), ("bad", &bad)], &no_metadata()).unwrap();
    let mut file = SafetensorsFile::map(&path).unwrap();
    assert!(file.take("ok", Kind::Double).is_err());
    assert!(
        file.take("bad", Kind::Float)
            .unwrap_err()
            .to_string()
            .contains("non-finite")
    );
    assert!(file.take("absent", Kind::Float).is_err());
    let mut file = SafetensorsFile::map(&path).unwrap();
    assert!(file.take("ok", Kind::Float).unwrap().equal(&ok));
}

#[test]
fn the_recorded_sha256_catches_any_damage_and_other_tools_files_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]);
    let ours = BTreeMap::from([("contrastive.thing".to_string(), "x".to_string())]);
    save_safetensors(&path, &[("w", &w)], &ours).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // One bit of one value: still a valid file, but not the one written.
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let err = SafetensorsFile::read(&path).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    // Written by another tool (no digest): read as it is, unless it claims to be ours.
    let view = |t: &Tensor| {
        let data: Vec<u8> = Vec::<f32>::try_from(t)
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        data
    };
    let data = view(&w);
    for (metadata, accepted) in [(None, true), (Some(ours), false)] {
        let tensor =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
        let info = metadata.map(|m| m.into_iter().collect());
        let encoded = safetensors::serialize([("w", tensor)], info).unwrap();
        std::fs::write(&path, encoded).unwrap();
        let read = SafetensorsFile::read(&path);
        assert_eq!(read.is_ok(), accepted, "{:?}", read.err());
        if let Ok(file) = read {
            assert!(file.tensors["w"].equal(&w));
        }
    }
}

#[test]
fn the_same_content_is_saved_as_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Tensor::from_slice(&[1.0f32, 2.0]),
        Tensor::from_slice(&[3i64]),
    );
    let metadata: BTreeMap<String, String> = (0..12)
        .map(|i| (format!("key{i}"), format!("value {i}")))
        .collect();
    let bytes: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("{i}.safetensors"));
            save_safetensors(&path, &[("b", &b), ("a", &a)], &metadata).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert!(bytes.iter().all(|x| *x == bytes[0]));
    let back = SafetensorsFile::read(dir.path().join("0.safetensors")).unwrap();
    assert_eq!(back.metadata, metadata);
}
