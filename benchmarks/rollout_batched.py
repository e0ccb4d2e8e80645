"""Batched rollouts (``python benchmarks/rollout.py --batched``): many operators per call.

For each device (the CPU, and CUDA when present), the medium operator (3 layers, 32 base channels,
kernel 5, 64x64, M = 5) in groups of G = 1, 8, 32, 128 operators of one signature, each with its
own weights, noise scale, spatial correlation, dropout rate and dt:

* ``op_steps_per_s``: operator-steps per second (one operator applied once to its M realizations)
  of :func:`spinlock_core.rollout.rollout_group`, and of the loop of single rollouts over the same
  G operators in the same round (``loop_op_steps_per_s``): ``ratio_to_g1`` is the median of the
  per-round ratios (interleaved rounds: only ratios measured in one run compare);
* ``fraction_of_fp32_peak``: achieved convolution FLOP/s over the device's float32 matmul rate,
  measured in the same run;
* ``projected_production_s``: 100,000 operators x 255 steps at the best rate, for the medium
  operator and scaled by the production config's mean convolution FLOPs per step.

Then, per device: ``torch.compile`` of the grouped step (``simulation.batching.compile``; CUDA
graphs on CUDA) against the eager group, with its compile time; and bfloat16 autocast against
float32 (its speed-up and the relative L2 drift of the field after 64 steps) where the device
has bf16 arithmetic.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from spinlock_core.devices import cpu_has_bf16
from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.operators.grouped import GroupedOperator
from spinlock_core.rollout import rollout, rollout_group

MEDIUM = dict(num_layers=3, base_channels=32, kernel_size=5)
PRODUCTION_OPERATORS = 100_000
PRODUCTION_STEPS = 255


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fp32_peak_gflops(device: torch.device) -> float:
    """Float32 matmul rate of ``device`` (TF32 off), best of several."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for _ in range(3):
            torch.mm(a, b)
        _sync(device)
        best = float("inf")
        for _ in range(10):
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return 2 * n**3 / best / 1e9


def medium_group(g: int, device: torch.device, m: int, grid: int, steps: int, seed: int = 0):
    """G medium operators of one signature with per-operator stochastic settings, and their ICs."""
    rng = np.random.default_rng(seed)
    specs = [
        OperatorSpec(
            **MEDIUM, grid_size=grid, noise_scale=float(10 ** rng.uniform(-3, -1)),
            spatial_correlation=float(rng.choice([0.0, rng.uniform(0.05, 0.3)])),
            dropout_rate=float(rng.choice([0.0, rng.uniform(0.0, 0.3)])), dt=float(rng.uniform(0.01, 0.1)),
        )
        for _ in range(g)
    ]
    ops = [build_operator(s, root_seed=seed, index=i, num_steps=steps, device=device) for i, s in enumerate(specs)]
    u0 = torch.randn(g, 3, grid, grid, generator=torch.Generator().manual_seed(seed)).to(device)
    return specs, ops, u0


def _loop(ops, u0, m: int, steps: int, device, amp=None) -> float:
    t0 = time.perf_counter()
    for i, op in enumerate(ops):
        rollout(op, u0[i], realizations=m, num_timesteps=steps + 1, root_seed=0, index=i,
                divergence_threshold=1e30, autocast_dtype=amp)
    _sync(device)
    return time.perf_counter() - t0


def _group(group, u0, m: int, steps: int, device, amp=None, out=None):
    t0 = time.perf_counter()
    rs = rollout_group(group, u0, realizations=m, num_timesteps=steps + 1, root_seed=0,
                       indices=list(range(group.g)), divergence_threshold=1e30, autocast_dtype=amp, out=out)
    _sync(device)
    return time.perf_counter() - t0, rs


def sweep(device: torch.device, sizes: list[int], m: int, grid: int, steps: int, rounds: int, peak: float) -> list[dict]:
    rows = []
    for g in sizes:
        specs, ops, u0 = medium_group(g, device, m, grid, steps)
        group = GroupedOperator(ops)
        flops = sum(s.conv_flops(m) for s in specs) * steps
        _loop(ops[: min(g, 2)], u0, m, 1, device)  # warm-up
        _group(group, u0, m, 1, device)
        pairs = []
        for _ in range(rounds):
            pairs.append((_loop(ops, u0, m, steps, device), _group(group, u0, m, steps, device)[0]))
        t_loop = statistics.median(p[0] for p in pairs)
        t_group = statistics.median(p[1] for p in pairs)
        rows.append({
            "G": g,
            "op_steps_per_s": g * steps / t_group,
            "loop_op_steps_per_s": g * steps / t_loop,
            "ratio_to_g1": statistics.median(lo / gr for lo, gr in pairs),
            "gflops": flops / t_group / 1e9,
            "fraction_of_fp32_peak": flops / t_group / 1e9 / peak,
            "steps": steps,
            "rounds": rounds,
        })
        del group, ops, u0
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def compile_speedup(device: torch.device, g: int, m: int, grid: int, steps: int, rounds: int) -> dict:
    """Eager group against ``simulation.batching.compile`` (torch_compile; cuda_graphs on CUDA)."""
    mode = "cuda_graphs" if device.type == "cuda" else "torch_compile"
    _, ops, u0 = medium_group(g, device, m, grid, steps)
    eager, compiled = GroupedOperator(ops), GroupedOperator(ops)
    compiled.compile(mode)
    t0 = time.perf_counter()
    _, rc = _group(compiled, u0, m, 2, device)  # compiles
    compile_s = time.perf_counter() - t0
    _, re_ = _group(eager, u0, m, 2, device)
    drift = max(float((a.trajectory - b.trajectory).abs().max()) for a, b in zip(rc, re_))
    pairs = [(_group(eager, u0, m, steps, device)[0], _group(compiled, u0, m, steps, device)[0]) for _ in range(rounds)]
    return {
        "mode": mode, "G": g, "compile_seconds": compile_s,
        "speedup": statistics.median(e / c for e, c in pairs),
        "max_abs_difference_after_2_steps": drift, "rounds": rounds, "steps": steps,
    }


def bf16_tradeoff(device: torch.device, g: int, m: int, grid: int, steps: int, rounds: int) -> dict:
    """float32 against bfloat16 autocast: speed-up, and the relative L2 drift of the last state."""
    _, ops, u0 = medium_group(g, device, m, grid, steps)
    group = GroupedOperator(ops)
    _group(group, u0, m, 1, device, amp=torch.bfloat16)  # warm-up
    t32, r32 = _group(group, u0, m, steps, device)
    t16, r16 = _group(group, u0, m, steps, device, amp=torch.bfloat16)
    pairs = [(t32, t16)] + [
        (_group(group, u0, m, steps // 4, device)[0], _group(group, u0, m, steps // 4, device, amp=torch.bfloat16)[0])
        for _ in range(rounds - 1)
    ]
    drift = [float((b.trajectory[:, -1] - a.trajectory[:, -1]).norm() / a.trajectory[:, -1].norm()) for a, b in zip(r32, r16)]
    return {
        "G": g, "steps": steps, "speedup": statistics.median(a / b for a, b in pairs),
        "relative_l2_drift_last_state_median": statistics.median(drift),
        "relative_l2_drift_last_state_max": max(drift), "rounds": rounds,
    }


def production_flops_ratio() -> float:
    """Mean convolution FLOPs per step of the production config's operators (4096 Sobol points
    decoded through its parameter space) over the medium operator's."""
    from pathlib import Path

    from scipy.stats import qmc

    from spinlock_core.config import load_experiment
    from spinlock_core.generation import operator_specs

    cfg = load_experiment(Path(__file__).resolve().parents[1] / "configs/experiments/100k_full_features.yaml")
    unit = qmc.Sobol(len(cfg.parameter_space.ordered()), scramble=True, seed=0).random(4096)
    specs = operator_specs(cfg, unit)
    m = cfg.simulation.num_realizations
    medium = OperatorSpec(**MEDIUM, grid_size=cfg.grid_size).conv_flops(m)
    return float(np.mean([s.conv_flops(m) for s in specs]) / medium)


def run(quick: bool) -> dict:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    ratio = production_flops_ratio()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "production_mean_conv_flops_over_medium": ratio, "devices": {}}
    for dev in devices:
        peak = fp32_peak_gflops(dev)
        cuda = dev.type == "cuda"
        steps = (2 if quick else 3) if not cuda else (8 if quick else 32)
        rounds = 2 if (quick or not cuda) else 5
        sizes = [1, 8, 32, 128] if not quick else [1, 8]
        rows = sweep(dev, sizes, 5, 64, steps, rounds, peak)
        best = max(rows, key=lambda r: r["op_steps_per_s"])
        d = {
            "name": torch.cuda.get_device_name(dev) if cuda else "cpu",
            "fp32_matmul_peak_gflops": peak,
            "sweep": rows,
            "best_G": best["G"],
            "projected_production_s_medium": PRODUCTION_OPERATORS * PRODUCTION_STEPS / best["op_steps_per_s"],
            "projected_production_s": PRODUCTION_OPERATORS * PRODUCTION_STEPS * ratio / best["op_steps_per_s"],
        }
        if not quick:
            d["compile"] = compile_speedup(dev, 8 if not cuda else 32, 5, 64, 3 if not cuda else 32, 2 if not cuda else 5)
        if cuda or cpu_has_bf16():
            d["bfloat16"] = bf16_tradeoff(dev, best["G"], 5, 64, 16 if quick else 64, 2 if not cuda else 5)
        out["devices"][dev.type] = d
    return out
