#!/bin/sh
# Linker wrapper used by .cargo/config.toml on Linux.
#
# It calls the system C compiler driver exactly as rustc asked, adding one thing: when the
# LIBTORCH folder exists (set by .cargo/config.toml or by you), its lib/ folder is written
# into the binary as a run path, so the binary finds libtorch without LD_LIBRARY_PATH.
# The path is resolved to its real location, so it stays valid if `.libtorch` is relinked.
# Binaries that do not use libtorch are unaffected (an unused run path costs nothing).
if [ -n "${LIBTORCH:-}" ] && [ -d "$LIBTORCH/lib" ]; then
    libdir=$(cd "$LIBTORCH/lib" && pwd -P)
    exec "${CONTRASTIVE_CC:-cc}" "$@" "-Wl,-rpath,$libdir"
fi
exec "${CONTRASTIVE_CC:-cc}" "$@"
