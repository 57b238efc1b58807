//! Devices, seeding, threads, and that the binary keeps libtorch_cuda linked.

use contrastive_tensor::{
    Device, Error, Kind, Tensor, cuda_device_count, parse_device, seeded, set_threads, threads,
};

#[test]
fn device_strings_parse_or_name_the_problem() {
    assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
    assert_eq!(parse_device("  CPU ").unwrap(), Device::Cpu);
    let auto = parse_device("auto").unwrap();
    let gpus = cuda_device_count();
    assert_eq!(
        auto,
        if gpus > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    );

    for bad in ["tpu", "cuda:", "cuda:-1", "cuda:x", "gpu0", ""] {
        let err = parse_device(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidDevice { .. }), "{bad:?}: {err}");
    }
    // One past the last GPU never exists; on a machine without a GPU, neither does "cuda".
    let past = format!("cuda:{gpus}");
    let err = parse_device(&past).unwrap_err();
    assert!(matches!(err, Error::DeviceUnavailable { .. }), "{err}");
    assert!(err.to_string().contains(&past), "{err}");
    if gpus == 0 {
        let err = parse_device("cuda").unwrap_err();
        assert!(err.to_string().contains("no CUDA device"), "{err}");
    } else {
        assert_eq!(parse_device("cuda").unwrap(), Device::Cuda(0));
    }
}

#[test]
fn the_same_seed_gives_the_same_numbers() {
    let draw = || Tensor::randn([100], (Kind::Float, Device::Cpu));
    let (a, b, c) = (seeded(42, draw), seeded(42, draw), seeded(43, draw));
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
}

#[test]
fn thread_count_is_set_and_zero_is_refused() {
    set_threads(1).unwrap();
    assert_eq!(threads(), 1);
    set_threads(2).unwrap();
    assert_eq!(threads(), 2);
    assert!(matches!(set_threads(0), Err(Error::InvalidThreadCount(0))));
}

/// The libraries this process has mapped, from /proc/self/maps.
fn mapped_libraries() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

#[test]
fn binaries_keep_libtorch_cuda_linked_when_libtorch_has_it() {
    // Asking for CUDA devices goes through the crate's anchor into libtorch_cuda.
    let _ = cuda_device_count();
    let libraries = mapped_libraries();
    let cpu = libraries
        .iter()
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .expect("libtorch_cpu.so is loaded");
    let lib_dir = std::path::Path::new(cpu).parent().unwrap();
    let has_cuda_build = lib_dir.join("libtorch_cuda.so").exists();
    let cuda_loaded = libraries
        .iter()
        .any(|path| path.ends_with("/libtorch_cuda.so"));
    // With a CUDA build of libtorch (the PyPI one), libtorch_cuda must be loaded, else no GPU
    // would ever be found; with a CPU-only build, there is nothing to load.
    assert_eq!(
        cuda_loaded,
        has_cuda_build,
        "libtorch folder {}",
        lib_dir.display()
    );
}
