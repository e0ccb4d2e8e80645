"""Numba's CPU code-generation target for the generator's kernels: a tuning choice, never a
change of the output bits (the kernels use exact integer and IEEE operations only).

Measured on the 2-vCPU Emerald Rapids build machine, one thread, a [5, 128, 64, 64] Gaussian draw:
5.0 ms with LLVM's model of the host CPU, 3.9 ms with the generic ``x86-64-v3`` model (the same
AVX-512 instruction set, the host's, but LLVM interleaves two vector iterations, which hides the
latency of the polynomial chains); 2.7 ms against 2.1 ms with two threads.

Numba has one code generator per process, so the choice reaches every numba function compiled in
the process. It is therefore made only when nobody made one (``NUMBA_CPU_NAME`` and
``NUMBA_CPU_FEATURES`` unset), only on x86-64, and only before numba compiled anything; the
instruction set stays the host's (numba passes the host's feature list), so no instruction the
CPU lacks is ever emitted.
"""

from __future__ import annotations

import logging
import os
import platform

__all__ = ["TUNING_CPU", "choose_cpu_target"]

log = logging.getLogger(__name__)

TUNING_CPU = "x86-64-v3"


def choose_cpu_target() -> bool:
    """Tune numba's code generator for ``TUNING_CPU`` when that is still possible and nobody
    chose otherwise; returns whether it did."""
    from numba.core import config, registry

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return False
    if "_toplevel_target_context" in registry.cpu_target.__dict__:  # numba already generated code
        log.debug("numba's CPU target is already initialised; the generator keeps its tuning")
        return False
    config.CPU_NAME = TUNING_CPU
    return True
