"""Rollout benchmark: prints one JSON object.

* ``matmul_peak_gflops``: float32 ``torch.mm`` 2048x2048 on this machine, measured in this run.
* per operator size (small / medium / large): operator-steps per second for a single step and
  for a whole rollout, achieved conv GFLOP/s (direct-convolution FLOPs, 2 per multiply-add), its
  fraction of the matmul peak, and the rollout rate as a fraction of the single-step rate
  (interleaved rounds, median of per-round ratios). medium = 3 layers, 32 base channels, kernel 5,
  64x64, M = 5 (widths 32, 64, 128 as the spec's b, 2b, 4b).
* ``hdf5``: the share of wall time spent in HDF5 writes while materializing one shard (parameters
  file excluded) with the production config's compression (gzip-4 + shuffle, 64x64, M = 5).
* ``generator``: the cost of the medium operator's noise draw (``spinlock_core.rng``: Philox4x32-10
  plus the exact Box-Muller transform, [M, 128, 64, 64] on the CPU) as a fraction of one medium
  step, split into Philox (a dropout-mask draw: the same Philox words, a compare instead of the
  transform) and transform; next to it the same fraction for the former ``torch.randn`` draw.
  Interleaved rounds, medians of the per-round ratios.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 python benchmarks/rollout.py [--quick]

``--batched`` runs the grouped-rollout benchmark instead (many operators per call, on the CPU and on
CUDA when present: see ``benchmarks/rollout_batched.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock_core.config import load_experiment  # noqa: E402
from spinlock_core.generation import write_initial_conditions, write_parameters  # noqa: E402
from spinlock_core.operators import OperatorSpec, apply_policy, build_operator  # noqa: E402
from spinlock_core.rng import GENERATOR, NOISE, DrawKey, keep_mask, unit_noise  # noqa: E402
from spinlock_core.rollout import rollout  # noqa: E402
from spinlock_core.storage.paths import ExperimentPaths  # noqa: E402

SIZES = {
    "small": dict(num_layers=2, base_channels=16, kernel_size=3),
    "medium": dict(num_layers=3, base_channels=32, kernel_size=5),
    "large": dict(num_layers=5, base_channels=64, kernel_size=7),
}


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def bench_size(name: str, grid: int, m: int, steps: int, rounds: int) -> dict:
    """Interleaved A/B rounds (the machine is shared): each round times ``steps`` isolated single
    steps, then a rollout of ``steps`` steps; ratios are medians of the per-round ratios."""
    spec = OperatorSpec(**SIZES[name], grid_size=grid, noise_scale=0.05, spatial_correlation=0.0, dropout_rate=0.0, dt=0.1)
    op = build_operator(spec, root_seed=0, index=0, num_steps=steps)
    u = torch.randn(m, 3, grid, grid)
    key = DrawKey.for_operator(0, 0, m)
    flops = spec.conv_flops(m)

    def single() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(steps):
                apply_policy(spec.update_policy, u, op(u, 0, key), dt=spec.dt, alpha=spec.alpha)
            return (time.perf_counter() - t0) / steps

    def roll() -> float:
        t0 = time.perf_counter()
        rollout(op, u[0], realizations=m, num_timesteps=steps + 1, root_seed=0, index=0, divergence_threshold=1e30)
        return (time.perf_counter() - t0) / steps

    single(), roll()  # warm-up
    pairs = [(single(), roll()) for _ in range(rounds)]
    step = statistics.median(p[0] for p in pairs)
    per_step_roll = statistics.median(p[1] for p in pairs)
    return {
        "spec": {**SIZES[name], "grid": grid, "M": m},
        "gflop_per_step": flops / 1e9,
        "single_step_ms": step * 1e3,
        "single_step_per_s": 1 / step,
        "rollout_step_ms": per_step_roll * 1e3,
        "rollout_steps_per_s": 1 / per_step_roll,
        "rollout_steps": steps,
        "rounds": rounds,
        "gflops_single_step": flops / step / 1e9,
        "gflops_rollout": flops / per_step_roll / 1e9,
        "rollout_over_single_step": statistics.median(s / r for s, r in pairs),
    }


def bench_generator(grid: int, m: int, steps: int, rounds: int) -> dict:
    """The noise draw of the medium operator against its step, interleaved rounds: each round times
    ``steps`` single steps, ``steps`` draws of the new generator, of its Philox part alone (a
    dropout-mask draw of the same shape) and of ``torch.randn``; ratios are medians of per-round
    ratios (the machine is shared: only ratios measured in one run compare)."""
    spec = OperatorSpec(**SIZES["medium"], grid_size=grid, noise_scale=0.05, spatial_correlation=0.0,
                        dropout_rate=0.0, dt=0.1)
    op = build_operator(spec, root_seed=0, index=0, num_steps=steps)
    u = torch.randn(m, 3, grid, grid)
    key = DrawKey.for_operator(0, 0, m)
    shape = (op.hidden, grid, grid)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for t in range(steps):
            fn(t)
        return (time.perf_counter() - t0) / steps

    def step(t):
        with torch.inference_mode():
            apply_policy(spec.update_policy, u, op(u, t, key.at_step(t)), dt=spec.dt, alpha=spec.alpha)

    fns = {
        "step": step,
        "generator": lambda t: unit_noise(key.at_step(t), NOISE, shape, "gaussian"),
        "philox": lambda t: keep_mask(key.at_step(t), NOISE, shape, 0.5),
        "randn": lambda t: torch.randn(m, *shape),
    }
    for fn in fns.values():  # warm-up (and the numba kernels' first load)
        timed(fn)
    rows = [{name: timed(fn) for name, fn in fns.items()} for _ in range(rounds)]

    def med(f) -> float:
        return statistics.median(f(r) for r in rows)

    return {
        "generator": GENERATOR,
        "shape": [m, *shape],
        "rounds": rounds,
        "steps_per_round": steps,
        "step_ms": med(lambda r: r["step"]) * 1e3,
        "generator_ms": med(lambda r: r["generator"]) * 1e3,
        "philox_ms": med(lambda r: r["philox"]) * 1e3,
        "torch_randn_ms": med(lambda r: r["randn"]) * 1e3,
        "generator_fraction_of_step": med(lambda r: r["generator"] / r["step"]),
        "philox_fraction_of_step": med(lambda r: r["philox"] / r["step"]),
        "transform_fraction_of_step": med(lambda r: (r["generator"] - r["philox"]) / r["step"]),
        "torch_randn_fraction_of_step": med(lambda r: r["randn"] / r["step"]),
    }


def bench_hdf5(n_ops: int, timesteps: int) -> dict:
    """Write share of one shard materialization (ICs, rollouts, every feature family) at the
    production config's storage settings (gzip-4 + shuffle, chunk 32, 64x64, M = 5), with small
    operators (1-2 layers, 4-8 channels): the cheapest compute for the same bytes, so the share is
    an upper bound for the production mixture."""
    from spinlock_core.generation import simulate_shard, write_feature_family

    prod = yaml.safe_load((ROOT / "configs/experiments/100k_full_features.yaml").read_text())
    prod["parameter_space"]["architecture"]["num_layers"]["bounds"] = [1, 2]
    prod["parameter_space"]["architecture"]["base_channels"]["bounds"] = [4, 8]
    prod["sampling"]["total_samples"] = n_ops
    # a handful of Sobol points cannot meet the 100k config's space-filling checks (they would
    # quarantine the parameters file); the benchmark measures storage, not sampling quality
    prod["sampling"]["validation"]["check_discrepancy"] = False
    prod["sampling"]["validation"]["check_correlation"] = False
    prod["dataset"]["storage"]["shard_size"] = n_ops
    prod["simulation"]["num_timesteps"] = timesteps
    prod["simulation"]["device"] = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bench.yaml"
        p.write_text(yaml.safe_dump(prod))
        cfg = load_experiment(p)
        paths = ExperimentPaths.for_config(cfg, Path(tmp) / "home")
        write_parameters(cfg, paths)
        t0 = time.perf_counter()
        ic, _, _ = write_initial_conditions(cfg, paths, 0)
        res = simulate_shard(cfg, paths, 0, families={"summary", "temporal"})
        arch, _ = write_feature_family(cfg, paths, 0, "architecture")
        total = time.perf_counter() - t0
        writes = ic.write.seconds + res.write_seconds + arch.write.seconds
        return {
            "config": "100k_full_features storage (gzip-4 + shuffle, 64x64, M=5), small operators, reduced N",
            "operators": n_ops,
            "timesteps": timesteps,
            "shard_seconds": total,
            "write_seconds": writes,
            "write_share": writes / total,
            "bytes_written": ic.write.bytes + sum(r.write.bytes for r in res.stages.values()) + arch.write.bytes,
            "rollout_seconds": res.simulation.seconds_rollout,
            "feature_seconds": res.feature_seconds,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    ap.add_argument("--batched", action="store_true", help="G operators per call: G = 1, 8, 32, 128 on each device")
    a = ap.parse_args()
    if a.batched:
        from rollout_batched import run

        print(json.dumps(run(a.quick), indent=2))
        return
    rounds = 3 if a.quick else 7
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "matmul_peak_gflops": matmul_peak(),
        "sizes": {},
    }
    steps = {"small": 64, "medium": 16, "large": 3}
    for name in SIZES:
        r = bench_size(name, 64, 5, max(2, steps[name] // (4 if a.quick else 1)), rounds if name != "large" else 3)
        r["fraction_of_matmul_peak"] = r["gflops_single_step"] / out["matmul_peak_gflops"]
        r["rollout_fraction_of_matmul_peak"] = r["gflops_rollout"] / out["matmul_peak_gflops"]
        out["sizes"][name] = r
    out["generator"] = bench_generator(64, 5, 4 if a.quick else 16, rounds)
    out["hdf5"] = bench_hdf5(4 if a.quick else 8, 64 if a.quick else 256)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
