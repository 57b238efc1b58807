// The one translation unit that includes ProcessGroupGloo.hpp (and through it the gloo
// headers, which come from the system's libgloo-dev, not from the torch wheel). It only
// constructs the backend inside libtorch and hands it back as a c10d::Backend, so no gloo
// class is laid out or given a vtable here: the gloo library that runs is the one linked
// into libtorch_cpu.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#ifdef USE_C10D_GLOO

c10::intrusive_ptr<c10d::Backend> ctr_make_gloo(const c10::intrusive_ptr<c10d::Store>& store,
                                                int rank, int world,
                                                const std::string& hostname,
                                                std::chrono::milliseconds timeout,
                                                int threads) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(
      hostname.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                       : c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
  options->threads = threads;
  // The constructor connects to every peer (through the store) and throws when one does not
  // arrive within the timeout.
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
}
#else
// Built without gloo's headers (see build.rs).
c10::intrusive_ptr<c10d::Backend> ctr_make_gloo(const c10::intrusive_ptr<c10d::Store>&, int,
                                                int, const std::string&,
                                                std::chrono::milliseconds, int) {
  throw std::runtime_error(
      "contrastive-tensor was built without gloo's headers: install libgloo-dev (Debian, "
      "Ubuntu) or set CONTRASTIVE_GLOO_INCLUDE, then rebuild");
}
#endif
