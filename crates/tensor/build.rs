//! Compiles `csrc/`, the few libtorch calls that tch does not expose (CPU autocast, memory
//! formats, the c10d collectives of `dist`), against the same libtorch that torch-sys found.
//!
//! libtorch links gloo in but the torch wheel does not ship gloo's headers, which
//! `ProcessGroupGloo.hpp` includes: they come from the system (Debian's `libgloo-dev`,
//! found under `/usr/include`, or `$CONTRASTIVE_GLOO_INCLUDE`). Without them the crate
//! still builds, and `dist::ProcessGroup::init` says what to install.

use std::env;
use std::path::PathBuf;

fn main() {
    for file in ["shim.cpp", "dist.cpp", "gloo_factory.cpp", "common.h"] {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }
    println!("cargo:rerun-if-env-changed=CONTRASTIVE_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // torch-sys (links = "tch") publishes the lib folder it linked against.
    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report libtorch's lib folder; run `cargo xtask setup`"),
    );
    let root = lib_dir
        .parent()
        .expect("libtorch lib folder has a parent")
        .to_path_buf();
    let cxx11_abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .file("csrc/shim.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/gloo_factory.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None);
    // With a CUDA build of libtorch, reference one symbol of libtorch_cuda so that the linker's
    // --as-needed keeps it: without it, CUDA devices stay invisible to the binary.
    if lib_dir.join("libtorch_cuda.so").exists() {
        build.define("CONTRASTIVE_LINK_TORCH_CUDA", None);
    }
    let gloo = env::var_os("CONTRASTIVE_GLOO_INCLUDE")
        .map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from);
    if gloo.join("gloo/rendezvous/store.h").is_file() {
        println!(
            "cargo:rerun-if-changed={}",
            gloo.join("gloo/rendezvous/store.h").display()
        );
        // Without it ProcessGroupGloo.hpp declares nothing.
        build.define("USE_C10D_GLOO", None);
        // `-I/usr/include` would break libstdc++'s `#include_next`; it is searched anyway.
        if gloo != std::path::Path::new("/usr/include") {
            build.include(&gloo);
        }
    } else {
        println!(
            "cargo:warning=gloo headers not found in {} (install libgloo-dev, or set \
             CONTRASTIVE_GLOO_INCLUDE): multi-process training is unavailable",
            gloo.display()
        );
    }
    build.compile("contrastive_shim");
}
