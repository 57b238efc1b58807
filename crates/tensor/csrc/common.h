// What the shim's translation units share: the thread-local message of the last failure.
#pragma once

#include <exception>
#include <string>

// The message of the last failed shim call on this thread (defined in shim.cpp).
std::string& ctr_error_slot();

// Runs `f`, turning any C++ exception into `on_error` and its message into the error slot.
template <typename F, typename R>
R guarded(F f, R on_error) {
  try {
    ctr_error_slot().clear();
    return f();
  } catch (const std::exception& e) {
    ctr_error_slot() = e.what();
  } catch (...) {
    ctr_error_slot() = "unknown C++ exception";
  }
  return on_error;
}
