// The few libtorch calls that tch 0.26 does not expose, behind a C ABI.
//
// Tensors cross the boundary as `at::Tensor*`, the same representation tch uses for its
// `C_tensor`. Every function catches C++ exceptions and reports them through
// `ctr_last_error()` (thread-local), returning a null pointer or -1.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cstring>
#include <string>

#include "common.h"

std::string& ctr_error_slot() {
  thread_local std::string slot;
  return slot;
}

#ifdef CONTRASTIVE_LINK_TORCH_CUDA
namespace at {
namespace cuda {
int warp_size();
}
}  // namespace at
#endif

extern "C" {

// The message of the last failed call on this thread ("" when none).
const char* ctr_last_error() { return ctr_error_slot().c_str(); }

// A non-null pointer when this binary links libtorch_cuda. Calling it keeps the library
// linked; the function itself is never called.
const void* ctr_torch_cuda_anchor() {
#ifdef CONTRASTIVE_LINK_TORCH_CUDA
  return reinterpret_cast<const void*>(&at::cuda::warp_size);
#else
  return nullptr;
#endif
}

// Autocast state for one device type (c10::DeviceType as an int). Thread-local in libtorch.
int ctr_autocast_is_enabled(int device_type) {
  return guarded([&] { return at::autocast::is_autocast_enabled(
                                  static_cast<c10::DeviceType>(device_type)) ? 1 : 0; },
                 -1);
}

int ctr_autocast_set_enabled(int device_type, int enabled) {
  return guarded([&] {
    at::autocast::set_autocast_enabled(static_cast<c10::DeviceType>(device_type), enabled != 0);
    return 0;
  }, -1);
}

// The autocast dtype as a c10::ScalarType code.
int ctr_autocast_get_dtype(int device_type) {
  return guarded([&] {
    return static_cast<int>(
        at::autocast::get_autocast_dtype(static_cast<c10::DeviceType>(device_type)));
  }, -1);
}

int ctr_autocast_set_dtype(int device_type, int scalar_type) {
  return guarded([&] {
    at::autocast::set_autocast_dtype(static_cast<c10::DeviceType>(device_type),
                                     static_cast<c10::ScalarType>(scalar_type));
    return 0;
  }, -1);
}

int ctr_autocast_increment_nesting() {
  return guarded([] { return at::autocast::increment_nesting(); }, -1);
}

// Returns the nesting depth left; at zero the cast cache is cleared, as torch.autocast does.
int ctr_autocast_decrement_nesting() {
  return guarded([] {
    int depth = at::autocast::decrement_nesting();
    if (depth == 0) at::autocast::clear_cache();
    return depth;
  }, -1);
}

// 1 when the tensor is laid out channels-last (NHWC strides), 0 otherwise.
int ctr_is_channels_last(const at::Tensor* t) {
  return guarded([&] {
    return t->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
  }, -1);
}

// A new tensor with the same values in the given memory format (0: contiguous, 1:
// channels-last). Null on error.
at::Tensor* ctr_contiguous_format(const at::Tensor* t, int channels_last) {
  return guarded([&] {
    auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    return new at::Tensor(t->contiguous(format));
  }, static_cast<at::Tensor*>(nullptr));
}

}  // extern "C"
