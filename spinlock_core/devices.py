"""Device and precision selection (``device: auto | cpu | cuda``)."""

from __future__ import annotations

import logging

import torch

__all__ = ["resolve_device", "resolve_dtype", "cpu_has_bf16"]

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU raises ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("simulation.device: 'cuda' requested but no CUDA device is available (use 'auto')")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"simulation.device: unknown {device!r}; use auto, cpu or cuda")


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` (None = plain float32). Reduced precision is always
    logged, never applied silently: tf32 and float16 on CUDA only, bfloat16 on CUDA or on a CPU
    with bf16 instructions.

    On CUDA, ``float32`` also turns TF32 off for convolutions and matmuls (PyTorch enables it
    for cuDNN convolutions by default, a hidden 10-bit mantissa); ``tf32`` turns it on explicitly.
    """
    if device.type == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if precision == "float32":
        return None
    if device.type != "cuda":
        if precision != "bfloat16":
            raise ValueError(f"simulation.precision: {precision} needs a CUDA device, running on {device.type}")
        if not cpu_has_bf16():
            raise ValueError(
                "simulation.precision: bfloat16 on the CPU needs bf16 instructions (avx512_bf16 or amx_bf16), "
                "which this CPU lacks; use float32"
            )
        log.warning(
            "rollouts run under bfloat16 autocast on the CPU (simulation.precision); stored fields are float32 "
            "but drift from a float32 rollout (benchmarks/rollout.py --batched reports how far)"
        )
        return torch.bfloat16
    if precision == "tf32":
        log.warning("rollouts run with TF32 convolutions (simulation.precision: tf32); stored fields are float32")
        return None
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
    log.warning("rollouts run under %s autocast (simulation.precision); stored fields are float32", precision)
    return dtype


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
