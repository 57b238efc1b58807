//! IDX, CIFAR and STL-10 readers on small files in the real formats, written by the tests,
//! and every bad-input case.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use contrastive_data::{
    Cifar100Label, Dataset, Error, Source, Split, Stl10, cifar10, cifar100, fashion_mnist,
    read_idx, read_idx_pair,
};
use flate2::{Compression, write::GzEncoder};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `n` images of `rows` x `cols` where pixel (i, r, c) = (i * 7 + r * cols + c) % 251.
fn pattern(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    (0..n * rows * cols)
        .map(|k| ((k / (rows * cols)) * 7 + k % (rows * cols)) as u8 % 251)
        .collect()
}

/// Writes a Fashion-MNIST-like folder (gzip for train, raw for test) and returns it.
fn write_mnist_folder(dir: &Path, train: usize, test: usize) -> PathBuf {
    let root = dir.join("fmnist");
    fs::create_dir_all(&root).unwrap();
    let images = |n| idx_bytes(&[n as u32, 5, 4], &pattern(n, 5, 4));
    let labels = |n: usize| {
        idx_bytes(
            &[n as u32],
            &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
        )
    };
    fs::write(
        root.join("train-images-idx3-ubyte.gz"),
        gzip(&images(train)),
    )
    .unwrap();
    fs::write(
        root.join("train-labels-idx1-ubyte.gz"),
        gzip(&labels(train)),
    )
    .unwrap();
    fs::write(root.join("t10k-images-idx3-ubyte"), images(test)).unwrap();
    fs::write(root.join("t10k-labels-idx1-ubyte"), labels(test)).unwrap();
    root
}

#[test]
fn idx_files_read_gzip_or_raw() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_mnist_folder(dir.path(), 12, 3);
    let train = fashion_mnist(&root, Split::Train).unwrap();
    let test = fashion_mnist(&root, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (12, 3));
    assert_eq!(train.image_shape(), [5, 4, 1]);
    assert_eq!(train.class_names()[9], "Ankle boot");
    let sample = train.get(11).unwrap();
    assert_eq!(sample.label, Some(1));
    assert_eq!(sample.image.dim(), (5, 4, 1));
    // Pixel (row 2, col 3) of image 11.
    let (image, row, col) = (11usize, 2usize, 3usize);
    assert_eq!(
        sample.image[[row, col, 0]],
        ((image * 7 + row * 4 + col) % 251) as u8
    );
    assert!(
        matches!(&sample.source, Source::Record { index: 11, file } if file.ends_with("train-images-idx3-ubyte.gz"))
    );
    let batch = train.get_many(&[3, 0, 7]).unwrap();
    assert_eq!(
        batch.iter().map(|s| s.label.unwrap()).collect::<Vec<_>>(),
        [3, 0, 7]
    );
    assert!(matches!(
        train.get(12),
        Err(Error::IndexOutOfRange { index: 12, len: 12 })
    ));
    assert!(fashion_mnist(&root, Split::Unlabeled).is_err());
}

fn error_of(bytes: &[u8], dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    let err = read_idx(&path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(name), "the error names the file: {text}");
    text
}

#[test]
fn bad_idx_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = idx_bytes(&[2, 3, 3], &[1; 18]);
    let gz = gzip(&good);

    let text = error_of(&gz[..gz.len() / 2], dir.path(), "truncated.gz");
    assert!(text.contains("gzip"), "{text}");
    let mut corrupt = gz.clone();
    for b in &mut corrupt[12..20] {
        *b ^= 0x5a;
    }
    let text = error_of(&corrupt, dir.path(), "corrupt.gz");
    assert!(text.contains("gzip"), "{text}");
    let text = error_of(b"\x89PNG\r\n\x1a\n", dir.path(), "magic.idx");
    assert!(text.contains("not an IDX file"), "{text}");
    let mut floats = good.clone();
    floats[2] = 0x0d;
    let text = error_of(&floats, dir.path(), "floats.idx");
    assert!(text.contains("0x0d"), "{text}");
    let text = error_of(&good[..good.len() - 5], dir.path(), "short.idx");
    assert!(
        text.contains("need 18 bytes") && text.contains("has 13"),
        "{text}"
    );
    let text = error_of(&[0, 0, 8, 9], dir.path(), "dims.idx");
    assert!(text.contains("9 dimensions"), "{text}");
}

#[test]
fn image_and_label_counts_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.idx");
    let labels = dir.path().join("labels.idx");
    fs::write(&images, idx_bytes(&[4, 2, 2], &[0; 16])).unwrap();
    fs::write(&labels, idx_bytes(&[3], &[0, 1, 2])).unwrap();
    let err =
        read_idx_pair(&images, &labels, vec!["a".into(), "b".into(), "c".into()]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::CountMismatch {
                images: 4,
                labels: 3,
                ..
            }
        ),
        "{err}"
    );
    // Labels beyond the class list are refused too.
    fs::write(&labels, idx_bytes(&[4], &[0, 1, 2, 7])).unwrap();
    let err =
        read_idx_pair(&images, &labels, vec!["a".into(), "b".into(), "c".into()]).unwrap_err();
    // ... naming the labels file, where the bad value is.
    let text = err.to_string();
    assert!(
        text.contains("label 7") && text.contains("labels.idx"),
        "{text}"
    );
}

/// One CIFAR record: label byte(s), then R, G and B planes where channel c of pixel
/// (r, col) is (seed + c * 50 + r + col) % 256.
fn cifar_record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut record = labels.to_vec();
    for c in 0..3u32 {
        for r in 0..32u32 {
            for col in 0..32u32 {
                record.push(((u32::from(seed) + c * 50 + r + col) % 256) as u8);
            }
        }
    }
    record
}

#[test]
fn cifar10_and_cifar100_records_become_hwc_images() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-10-batches-bin");
    fs::create_dir_all(&bin).unwrap();
    for i in 1..=5u8 {
        let records: Vec<u8> = (0..2)
            .flat_map(|k| cifar_record(&[i + k], i * 10 + k))
            .collect();
        fs::write(bin.join(format!("data_batch_{i}.bin")), records).unwrap();
    }
    fs::write(bin.join("test_batch.bin"), cifar_record(&[9], 3)).unwrap();
    let train = cifar10(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 10);
    assert_eq!(train.class_names()[0], "airplane");
    let s = train.get(3).unwrap(); // batch 2, record 1: label 3, seed 21
    assert_eq!((s.label, s.image.dim()), (Some(3), (32, 32, 3)));
    let (seed, row, col, blue) = (21u32, 4u32, 5u32, 2u32);
    assert_eq!(
        s.image[[4, 5, 2]],
        ((seed + blue * 50 + row + col) % 256) as u8
    );
    assert_eq!(cifar10(&bin, Split::Test).unwrap().len(), 1);

    let c100 = dir.path().join("cifar-100-binary");
    fs::create_dir_all(&c100).unwrap();
    fs::write(
        c100.join("train.bin"),
        [cifar_record(&[4, 42], 0), cifar_record(&[19, 99], 1)].concat(),
    )
    .unwrap();
    fs::write(
        c100.join("fine_label_names.txt"),
        (0..100).map(|i| format!("fine{i}\n")).collect::<String>(),
    )
    .unwrap();
    let fine = cifar100(dir.path(), Split::Train, Cifar100Label::Fine).unwrap();
    let coarse = cifar100(dir.path(), Split::Train, Cifar100Label::Coarse).unwrap();
    assert_eq!(
        (fine.get(1).unwrap().label, coarse.get(1).unwrap().label),
        (Some(99), Some(19))
    );
    assert_eq!(fine.class_names()[42], "fine42");
    assert_eq!(coarse.class_names().len(), 20);
}

#[test]
fn a_wrong_cifar_record_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = cifar_record(&[1], 0);
    record.pop();
    fs::write(dir.path().join("test_batch.bin"), &record).unwrap();
    let err = cifar10(dir.path(), Split::Test).unwrap_err();
    assert!(
        err.to_string().contains("3073-byte") && err.to_string().contains("test_batch.bin"),
        "{err}"
    );
    let missing = cifar10(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(missing, Error::Io { .. }) && missing.to_string().contains("data_batch_1.bin")
    );
}

/// One STL-10 image: channel planes in column-major order; channel c of pixel (row, col) is
/// (seed + c * 60 + 2 * row + col) % 256.
fn stl_image(seed: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(3 * 96 * 96);
    for c in 0..3 {
        for col in 0..96 {
            for row in 0..96 {
                bytes.push(((seed + c * 60 + 2 * row + col) % 256) as u8);
            }
        }
    }
    bytes
}

#[test]
fn stl10_reads_column_major_planes_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("stl10_binary");
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("train_X.bin"),
        [stl_image(0), stl_image(5), stl_image(9)].concat(),
    )
    .unwrap();
    fs::write(bin.join("train_y.bin"), [1u8, 10, 3]).unwrap();
    fs::write(
        bin.join("unlabeled_X.bin"),
        [stl_image(1), stl_image(2)].concat(),
    )
    .unwrap();
    let train = Stl10::open(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 3);
    let s = train.get(1).unwrap();
    assert_eq!((s.label, s.image.dim()), (Some(9), (96, 96, 3)));
    let (seed, row, col, green) = (5u32, 10u32, 3u32, 1u32);
    assert_eq!(
        s.image[[10, 3, 1]],
        ((seed + green * 60 + 2 * row + col) % 256) as u8
    );
    assert_eq!(train.class_names()[9], "truck");
    let unlabeled = Stl10::open(&bin, Split::Unlabeled).unwrap();
    assert_eq!(
        (unlabeled.len(), unlabeled.get(1).unwrap().label),
        (2, None)
    );

    fs::write(bin.join("test_X.bin"), stl_image(0)).unwrap();
    fs::write(bin.join("test_y.bin"), [1u8, 2]).unwrap();
    assert!(matches!(
        Stl10::open(&bin, Split::Test),
        Err(Error::CountMismatch {
            images: 1,
            labels: 2,
            ..
        })
    ));
    fs::write(bin.join("test_y.bin"), [0u8]).unwrap();
    assert!(
        Stl10::open(&bin, Split::Test)
            .unwrap_err()
            .to_string()
            .contains("label 0")
    );
    fs::write(bin.join("test_X.bin"), &stl_image(0)[..1000]).unwrap();
    assert!(
        Stl10::open(&bin, Split::Test)
            .unwrap_err()
            .to_string()
            .contains("27648-byte")
    );
}
