//! Declarations of `csrc/`, the libtorch calls that tch does not expose.

use std::ffi::{CStr, c_char, c_int, c_void};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::{Error, Result};

unsafe extern "C" {
    fn ctr_last_error() -> *const c_char;
    fn ctr_torch_cuda_anchor() -> *const c_void;
    pub(crate) fn ctr_autocast_is_enabled(device_type: c_int) -> c_int;
    pub(crate) fn ctr_autocast_set_enabled(device_type: c_int, enabled: c_int) -> c_int;
    pub(crate) fn ctr_autocast_get_dtype(device_type: c_int) -> c_int;
    pub(crate) fn ctr_autocast_set_dtype(device_type: c_int, scalar_type: c_int) -> c_int;
    pub(crate) fn ctr_autocast_increment_nesting() -> c_int;
    pub(crate) fn ctr_autocast_decrement_nesting() -> c_int;
    fn ctr_is_channels_last(t: *const C_tensor) -> c_int;
    fn ctr_contiguous_format(t: *const C_tensor, channels_last: c_int) -> *mut C_tensor;
    // csrc/dist.cpp: return 0, or -1 (failed), -6 (group failed earlier), -7 (shapes differ).
    pub(crate) fn ctr_dist_init(
        master_host: *const c_char,
        master_port: c_int,
        rank: c_int,
        world: c_int,
        host_store: c_int,
        agent_store: c_int,
        prefix: *const c_char,
        gloo_hostname: *const c_char,
        timeout_ms: i64,
        threads: c_int,
        out: *mut *mut CtrDistGroup,
    ) -> c_int;
    pub(crate) fn ctr_dist_free(group: *mut CtrDistGroup);
    pub(crate) fn ctr_dist_allreduce(
        group: *mut CtrDistGroup,
        t: *mut C_tensor,
        mean: c_int,
    ) -> c_int;
    pub(crate) fn ctr_dist_broadcast(
        group: *mut CtrDistGroup,
        t: *mut C_tensor,
        root: c_int,
    ) -> c_int;
    pub(crate) fn ctr_dist_allgather(
        group: *mut CtrDistGroup,
        t: *const C_tensor,
        with_grad: c_int,
        out: *mut *mut C_tensor,
    ) -> c_int;
    pub(crate) fn ctr_dist_allreduce_with_grad(
        group: *mut CtrDistGroup,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> c_int;
    pub(crate) fn ctr_dist_barrier(group: *mut CtrDistGroup) -> c_int;
    pub(crate) fn ctr_dist_failure(group: *mut CtrDistGroup) -> *const c_char;
}

/// A c10d process group owned by the shim (opaque).
#[repr(C)]
pub(crate) struct CtrDistGroup {
    _private: [u8; 0],
}

/// Turns a shim return code into a result: negative codes carry the C++ error message.
pub(crate) fn check(code: c_int) -> Result<c_int> {
    if code < 0 {
        Err(last_error())
    } else {
        Ok(code)
    }
}

fn last_error() -> Error {
    Error::Torch(tch::TchError::Torch(last_message()))
}

/// The message of the last failed shim call on this thread.
pub(crate) fn last_message() -> String {
    // SAFETY: the shim returns a pointer to a thread-local, NUL-terminated string that lives
    // until the next shim call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(ctr_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether this binary was linked against libtorch_cuda. Referencing the anchor keeps the
/// library linked under `--as-needed`, which is what lets libtorch see CUDA devices.
pub(crate) fn torch_cuda_linked() -> bool {
    // SAFETY: the anchor only returns a function address (or null); it has no side effects.
    !std::hint::black_box(unsafe { ctr_torch_cuda_anchor() }).is_null()
}

/// Whether `t` is laid out channels-last.
pub(crate) fn is_channels_last(t: &Tensor) -> Result<bool> {
    // SAFETY: `t` is a live tensor; the shim only reads it.
    check(unsafe { ctr_is_channels_last(t.as_ptr()) }).map(|flag| flag == 1)
}

/// `t` made contiguous in the given memory format.
pub(crate) fn contiguous_format(t: &Tensor, channels_last: bool) -> Result<Tensor> {
    // SAFETY: `t` is a live tensor; on success the shim returns a new owned tensor handle,
    // whose ownership `from_ptr` takes.
    let ptr = unsafe { ctr_contiguous_format(t.as_ptr(), c_int::from(channels_last)) };
    if ptr.is_null() {
        Err(last_error())
    } else {
        Ok(unsafe { Tensor::from_ptr(ptr) })
    }
}
