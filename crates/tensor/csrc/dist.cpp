// Data-parallel collectives over libtorch's own distributed engine (c10d): a TCPStore for
// the rendezvous and a Gloo process group for CPU tensors, behind a C ABI.
//
// Every function returns 0 on success and a negative code on failure, with the message in
// ctr_last_error(): -1 a failed call (timeout, lost peer, bad input), -6 a group that
// already failed (every later call fails fast), -7 tensors of different shapes on
// different ranks (all ranks see it; the group stays usable). Nothing throws across the
// boundary.
//
// Every rank of a group of more than one beats in the store (a counter it raises every
// kBeat, through a client of its own with a short timeout). When a collective fails for
// want of a peer (a timeout, a closed connection), the rank holds a roll call before it
// reports: ranks whose counters stand still over kRollCall are named as lost, so the
// message says which rank died (or that every rank still runs, for a timeout), whoever
// launched the job.

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <memory>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common.h"

c10::intrusive_ptr<c10d::Backend> ctr_make_gloo(const c10::intrusive_ptr<c10d::Store>& store,
                                                int rank, int world,
                                                const std::string& hostname,
                                                std::chrono::milliseconds timeout,
                                                int threads);

namespace {

using std::chrono::milliseconds;

// A collective waits this much longer than the group's own timeout, so that gloo's timeout
// (which names what it waited for) fires first.
constexpr milliseconds kGrace{5000};
// How often a rank beats, how long a roll call watches the beats, and how long one beat or
// count may wait for the store.
constexpr milliseconds kBeat{200};
constexpr milliseconds kRollCall{1500};
constexpr milliseconds kPulseTimeout{3000};

struct GroupFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapesDiffer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A process group, the first failure that made it unusable, and the thread that beats for
// this rank in the store. Reference counted: a gather's backward in the autograd graph keeps
// it alive.
struct Group : torch::CustomClassHolder {
  c10::intrusive_ptr<c10d::Store> store;
  // A second client of the same store with a short timeout, for the beats and roll calls.
  c10::intrusive_ptr<c10d::Store> pulse;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank = 0;
  int world = 1;
  // Whether this rank hosts the store (else the launcher's agent or rank 0 does).
  bool hosts_store = false;
  bool agent_store = false;
  milliseconds timeout{0};
  std::mutex mutex;
  std::string failure;

  ~Group() { stop_beating(); }

  void check_usable() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!failure.empty()) throw GroupFailed(failure);
  }
  bool failed() {
    std::lock_guard<std::mutex> lock(mutex);
    return !failure.empty();
  }
  // Records the first failure, with the roll call's finding appended when a peer is
  // missing, and returns what was recorded.
  std::string fail(const std::string& message) {
    if (failed()) return message;
    auto explained = wants_peer(message) ? message + "; " + roll_call() : message;
    std::lock_guard<std::mutex> lock(mutex);
    if (failure.empty()) failure = explained;
    return failure;
  }
  void wait(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(timeout + kGrace); }

  // Starts the thread that beats for this rank until the group ends; a beat that fails
  // (the store slow or gone) is tried again at the next one. A beat waits at most
  // kPulseTimeout, so the group's end waits at most that long for the thread.
  void start_beating() {
    beating = std::thread([beat = beat, pulse = pulse, key = beat_key(rank)] {
      while (true) {
        try {
          pulse->add(key, 1);
        } catch (...) {
          // Missed beats are what a roll call reads; nothing to do here.
        }
        std::unique_lock<std::mutex> lock(beat->mutex);
        if (beat->wake.wait_for(lock, kBeat, [&] { return beat->stop; })) return;
      }
    });
  }

 private:
  struct Beat {
    std::mutex mutex;
    std::condition_variable wake;
    bool stop = false;
  };
  std::shared_ptr<Beat> beat = std::make_shared<Beat>();
  std::thread beating;

  static std::string beat_key(int r) { return "beat/" + std::to_string(r); }

  void stop_beating() {
    {
      std::lock_guard<std::mutex> lock(beat->mutex);
      beat->stop = true;
    }
    beat->wake.notify_all();
    if (beating.joinable()) beating.join();
  }

  // Whether `message` is a collective's failure for want of a peer (worth a roll call), as
  // against bad input found before any communication.
  static bool wants_peer(const std::string& message) {
    std::string lower(message);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* sign : {"timed out", "timeout", "closed", "reset", "broken pipe",
                             "refused", "end of file", "connection"}) {
      if (lower.find(sign) != std::string::npos) return true;
    }
    return false;
  }

  std::vector<int64_t> beats() {
    std::vector<int64_t> counts;
    for (int r = 0; r < world; ++r) counts.push_back(pulse->add(beat_key(r), 0));
    return counts;
  }

  // Which other ranks stopped beating: "rank 1 of 2 was lost", or that all still run.
  std::string roll_call() {
    if (world < 2) return "no other rank";
    std::vector<int64_t> before, after;
    try {
      before = beats();
      std::this_thread::sleep_for(kRollCall);
      after = beats();
    } catch (const std::exception&) {
      if (agent_store) return "the launcher's rendezvous store is unreachable too";
      if (hosts_store) return "the rendezvous store this rank hosts failed";
      return "the rendezvous store is unreachable too: rank 0 of " + std::to_string(world) +
             ", which hosted it, was lost";
    }
    std::vector<int> lost;
    for (int r = 0; r < world; ++r)
      if (r != rank && after[r] == before[r]) lost.push_back(r);
    if (lost.empty())
      return "every other rank still runs (rank " + std::to_string(rank) + " of " +
             std::to_string(world) + " gave up waiting)";
    std::ostringstream out;
    out << (lost.size() == 1 ? "rank " : "ranks ");
    for (size_t i = 0; i < lost.size(); ++i) out << (i ? ", " : "") << lost[i];
    out << " of " << world << (lost.size() == 1 ? " was" : " were")
        << " lost (stopped answering)";
    return out.str();
  }
};

std::string message_of(const std::exception& e) {
  if (auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// Runs one operation of `group`: refused when the group failed before; any failure but a
// shape disagreement (which every rank detects alike) marks the group failed.
template <typename F>
int run(Group* group, F f) {
  try {
    ctr_error_slot().clear();
    if (group) group->check_usable();
    try {
      f();
    } catch (const ShapesDiffer&) {
      throw;
    } catch (const std::exception& e) {
      if (!group) throw;
      throw std::runtime_error(group->fail(message_of(e)));
    }
    return 0;
  } catch (const GroupFailed& e) {
    ctr_error_slot() = e.what();
    return -6;
  } catch (const ShapesDiffer& e) {
    ctr_error_slot() = e.what();
    return -7;
  } catch (const std::exception& e) {
    ctr_error_slot() = message_of(e);
  } catch (...) {
    ctr_error_slot() = group ? group->fail("unknown C++ exception") : "unknown C++ exception";
  }
  return -1;
}

// Runs `f` on `t` in host memory: Gloo's transport reads and writes CPU tensors, so a
// tensor on another device travels through a host copy and back (NCCL is not built in).
template <typename F>
void on_host(at::Tensor& t, F f) {
  if (t.is_cpu()) return f(t);
  auto host = t.to(at::kCPU).contiguous();
  f(host);
  t.copy_(host);
}

// Sums the contiguous tensor `t` over all ranks in place.
void allreduce_sum(Group& g, at::Tensor& t) {
  on_host(t, [&](at::Tensor& h) {
    std::vector<at::Tensor> tensors{h};
    g.wait(g.backend->allreduce(tensors, c10d::AllreduceOptions{}));
  });
}

std::string shape_text(const at::Tensor& header) {
  auto h = header.accessor<int64_t, 1>();
  std::ostringstream out;
  out << c10::toString(static_cast<c10::ScalarType>(h[1])) << "[";
  for (int64_t d = 0; d < h[0]; ++d) out << (d ? ", " : "") << h[2 + d];
  out << "]";
  return out.str();
}

// Every rank's `x` (the same shape and kind on all ranks, else ShapesDiffer on all of
// them) concatenated along dimension 0, in rank order.
at::Tensor gather(Group& g, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  constexpr int64_t kMaxDims = 8;
  TORCH_CHECK(x.dim() >= 1 && x.dim() <= kMaxDims, "all_gather: tensors of 1 to 8 dimensions, got ",
              x.dim());
  auto header = at::zeros({2 + kMaxDims}, at::kLong);
  header[0] = x.dim();
  header[1] = static_cast<int64_t>(x.scalar_type());
  for (int64_t d = 0; d < x.dim(); ++d) header[2 + d] = x.size(d);
  std::vector<at::Tensor> header_in{header};
  std::vector<std::vector<at::Tensor>> headers(1);
  for (int r = 0; r < g.world; ++r) headers[0].push_back(at::empty_like(header));
  g.wait(g.backend->allgather(headers, header_in));
  for (int r = 0; r < g.world; ++r) {
    if (!at::equal(headers[0][r], header)) {
      std::ostringstream out;
      out << "all_gather: ranks hold tensors of different shapes or kinds:";
      for (int k = 0; k < g.world; ++k) out << " rank " << k << " " << shape_text(headers[0][k]);
      throw ShapesDiffer(out.str());
    }
  }
  std::vector<at::Tensor> in{x.detach().to(at::kCPU).contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < g.world; ++r) out[0].push_back(at::empty_like(in[0]));
  g.wait(g.backend->allgather(out, in));
  return at::cat(out[0], 0).to(x.device());
}

// The group a Function saved in forward, and `incoming` (a gradient) summed over its ranks:
// a copy, as the incoming gradient may be shared with another branch of the graph. A failure
// marks the group failed before it propagates.
std::pair<c10::intrusive_ptr<Group>, at::Tensor> summed_over_ranks(
    torch::autograd::AutogradContext* ctx, const at::Tensor& incoming) {
  auto group = c10::static_intrusive_pointer_cast<Group>(ctx->saved_data["group"].toCapsule());
  group->check_usable();
  auto grad = incoming.contiguous().clone();
  try {
    allreduce_sum(*group, grad);
  } catch (const std::exception& e) {
    throw std::runtime_error(group->fail(message_of(e)));
  }
  return {group, grad};
}

// All ranks' rows in forward; in backward, every rank's gradient of the gathered tensor
// summed, and this rank's rows of the sum: the exact gradient of the sum of all ranks'
// losses.
struct GatherWithGrad : torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<Group> group) {
    ctx->saved_data["group"] = c10::IValue::make_capsule(group);
    ctx->saved_data["rows"] = x.size(0);
    return gather(*group, x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto [group, grad] = summed_over_ranks(ctx, grads[0]);
    auto rows = ctx->saved_data["rows"].toInt();
    return {grad.narrow(0, group->rank * rows, rows), at::Tensor()};
  }
};

// The sum over all ranks in forward; in backward, the sum over all ranks of the incoming
// gradient (every rank's output is the same sum of every rank's input).
struct AllReduceWithGrad : torch::autograd::Function<AllReduceWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<Group> group) {
    ctx->saved_data["group"] = c10::IValue::make_capsule(group);
    auto sum = x.detach().contiguous().clone();
    allreduce_sum(*group, sum);
    return sum;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {summed_over_ranks(ctx, grads[0]).second, at::Tensor()};
  }
};

}  // namespace

struct CtrDistGroup {
  c10::intrusive_ptr<Group> group;
};

extern "C" {

// Joins the group of `world` processes as `rank`: connects to the TCPStore at
// master_host:master_port (hosting it when host_store is 1; agent_store 1 when the
// launcher's agent hosts it) under `prefix`, then builds a Gloo group whose device binds
// `gloo_hostname` ("" for the machine's own name), and starts beating. Waits at most
// `timeout_ms` for every peer.
int ctr_dist_init(const char* master_host, int master_port, int rank, int world,
                  int host_store, int agent_store, const char* prefix, const char* gloo_hostname,
                  int64_t timeout_ms, int threads, CtrDistGroup** out) {
  *out = nullptr;
  return run(nullptr, [&] {
    auto group = c10::make_intrusive<Group>();
    group->rank = rank;
    group->world = world;
    group->timeout = milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(master_port);
    options.isServer = host_store != 0;
    options.numWorkers = world;
    options.waitWorkers = true;
    options.timeout = group->timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(master_host), options);
    group->store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    if (world > 1) {
      c10d::TCPStoreOptions pulse;
      pulse.port = options.port;
      pulse.isServer = false;
      pulse.waitWorkers = false;
      pulse.timeout = kPulseTimeout;
      auto client = c10::make_intrusive<c10d::TCPStore>(std::string(master_host), pulse);
      group->pulse = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), client);
    }
    group->hosts_store = host_store != 0;
    group->agent_store = agent_store != 0;
    group->backend = ctr_make_gloo(group->store, rank, world, std::string(gloo_hostname),
                                   group->timeout, threads);
    if (world > 1) group->start_beating();
    *out = new CtrDistGroup{group};
  });
}

// Leaves the group (the last reference, a gather's backward included, frees it).
void ctr_dist_free(CtrDistGroup* g) {
  try {
    delete g;
  } catch (...) {
  }
}

// Sums `t` over all ranks in place (op 1: then divides by the number of ranks).
int ctr_dist_allreduce(CtrDistGroup* g, at::Tensor* t, int mean) {
  return run(g->group.get(), [&] {
    at::NoGradGuard no_grad;
    auto buffer = t->contiguous();
    allreduce_sum(*g->group, buffer);
    if (mean) buffer.div_(g->group->world);
    if (!buffer.is_same(*t)) t->copy_(buffer);
  });
}

// Overwrites `t` on every rank with root's.
int ctr_dist_broadcast(CtrDistGroup* g, at::Tensor* t, int root) {
  return run(g->group.get(), [&] {
    at::NoGradGuard no_grad;
    auto buffer = t->contiguous();
    on_host(buffer, [&](at::Tensor& h) {
      std::vector<at::Tensor> tensors{h};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      g->group->wait(g->group->backend->broadcast(tensors, options));
    });
    if (!buffer.is_same(*t)) t->copy_(buffer);
  });
}

// Every rank's `t` concatenated along dimension 0 into a new tensor; with `with_grad`, the
// result's gradient flows back to `t` (see GatherWithGrad).
int ctr_dist_allgather(CtrDistGroup* g, const at::Tensor* t, int with_grad, at::Tensor** out) {
  *out = nullptr;
  return run(g->group.get(), [&] {
    at::Tensor result = with_grad ? GatherWithGrad::apply(*t, g->group) : gather(*g->group, *t);
    *out = new at::Tensor(result);
  });
}

// The sum of every rank's `t` as a new tensor whose gradient flows back to `t` (see
// AllReduceWithGrad).
int ctr_dist_allreduce_with_grad(CtrDistGroup* g, const at::Tensor* t, at::Tensor** out) {
  *out = nullptr;
  return run(g->group.get(), [&] {
    *out = new at::Tensor(AllReduceWithGrad::apply(*t, g->group));
  });
}

// Returns once every rank has called it.
int ctr_dist_barrier(CtrDistGroup* g) {
  return run(g->group.get(), [&] {
    c10d::BarrierOptions options;
    options.timeout = g->group->timeout;
    g->group->wait(g->group->backend->barrier(options));
  });
}

// The first failure that made the group unusable ("" while it works).
const char* ctr_dist_failure(CtrDistGroup* g) {
  std::lock_guard<std::mutex> lock(g->group->mutex);
  ctr_error_slot() = g->group->failure;
  return ctr_error_slot().c_str();
}

}  // extern "C"
