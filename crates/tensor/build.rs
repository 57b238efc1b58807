//! Compiles `csrc/shim.cpp`, the few libtorch calls that tch does not expose (CPU autocast,
//! memory formats), against the same libtorch that torch-sys found.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
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
    build.compile("contrastive_shim");
}
