"""Feature-extraction benchmark: prints one JSON object.

* throughput per family (operator-trajectories per second) at T = 256, M = 5, 64x64 on the
  trajectories of a real medium operator (3 layers, 32 base channels, kernel 5);
* each family's cost as a ratio to that operator's rollout time, measured in the same run, and the
  totals with operator sensitivity off and on (targets <= 0.15 and <= 0.30);
* peak RSS of a shard materialization (rollouts + every feature family, written to HDF5) in a fresh
  process for an experiment of N and of 4N operators (same shard), and for a shard of 4x the
  operators; ratios (target <= 1.1 for the experiment).

    python benchmarks/features.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock_core.features import summary as summary_family  # noqa: E402
from spinlock_core.features.extract import architecture_features, initial_family  # noqa: E402
from spinlock_core.features.sensitivity import sensitivity_features  # noqa: E402
from spinlock_core.features.temporal import state_features  # noqa: E402
from spinlock_core.operators import OperatorSpec, build_operator  # noqa: E402
from spinlock_core.rollout import rollout  # noqa: E402


def _time(fn, reps: int) -> float:
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def family_costs(t: int, m: int, grid: int, reps: int) -> dict:
    spec = OperatorSpec(num_layers=3, base_channels=32, kernel_size=5, grid_size=grid, noise_scale=0.05, dropout_rate=0.1, dt=0.1)
    op = build_operator(spec, root_seed=0, index=0, num_steps=t - 1)
    g = torch.Generator().manual_seed(0)
    u0 = torch.randn(3, grid, grid, generator=g)
    t0 = time.perf_counter()
    traj = rollout(op, u0, realizations=m, num_timesteps=t, root_seed=0, index=0, divergence_threshold=1e9).trajectory
    rollout_s = time.perf_counter() - t0
    batch = traj.unsqueeze(0)  # [1, M, T, C, H, W]
    flat = batch.reshape(m * t, 3, grid, grid)
    sf = state_features(flat).reshape(1, m, t, -1)
    cost = {
        "temporal": _time(lambda: state_features(flat).reshape(1, m, t, -1).mean(1), reps),
        "summary": _time(lambda: summary_family.aggregate(summary_family.per_trajectory_features(batch, sf)), reps),
        "sensitivity": _time(lambda: sensitivity_features(op, traj, root_seed=0, index=0), max(1, reps // 2)),
        "initial": _time(lambda: initial_family(u0.unsqueeze(0).numpy()), reps),
        "architecture": _time(lambda: architecture_features(_arch_cfg(), np.random.default_rng(0).random((1, 12))), reps),
    }
    off = cost["temporal"] + cost["summary"] + cost["initial"] + cost["architecture"]
    return {
        "operator": {"num_layers": 3, "base_channels": 32, "kernel_size": 5, "grid": grid, "M": m, "T": t},
        "rollout_seconds_per_operator": rollout_s,
        "seconds_per_operator": cost,
        "operator_trajectories_per_second": {k: m / v for k, v in cost.items()},
        "ratio_to_rollout": {k: v / rollout_s for k, v in cost.items()},
        "total_ratio_sensitivity_off": off / rollout_s,
        "total_ratio_sensitivity_on": (off + cost["sensitivity"]) / rollout_s,
    }


_ARCH = None


def _arch_cfg():
    global _ARCH
    if _ARCH is None:
        from spinlock_core.config import load_experiment

        _ARCH = load_experiment(ROOT / "configs/experiments/100k_full_features.yaml")
    return _ARCH


RSS_CHILD = r"""
import sys, json

def hwm_mb():  # VmHWM belongs to this process image (ru_maxrss would carry the parent's pages over fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from pathlib import Path
sys.path.insert(0, sys.argv[3])
from spinlock_core.config import load_experiment
from spinlock_core.generation import write_parameters, write_initial_conditions, simulate_shard, write_feature_family
from spinlock_core.storage.paths import ExperimentPaths
cfg = load_experiment(sys.argv[1])
paths = ExperimentPaths.for_config(cfg, Path(sys.argv[2]))
write_parameters(cfg, paths)
base = hwm_mb()
write_initial_conditions(cfg, paths, 0)
res = simulate_shard(cfg, paths, 0, families={"summary", "temporal"})
for fam in ("architecture", "initial"):
    write_feature_family(cfg, paths, 0, fam)
print(json.dumps({"peak_rss_mb": hwm_mb(), "rss_after_parameters_mb": base,
                  "shard_seconds": res.seconds_total, "write_share": res.write_seconds / res.seconds_total}))
"""


def peak_rss(n_total: int, shard: int, t: int, m: int, grid: int) -> dict:
    d = yaml.safe_load((ROOT / "configs/experiments/100k_full_features.yaml").read_text())
    d["parameter_space"]["architecture"]["num_layers"]["bounds"] = [1, 2]
    d["parameter_space"]["architecture"]["base_channels"]["bounds"] = [4, 8]
    d["parameter_space"]["operator"]["grid_size"]["choices"] = [grid]
    d["sampling"]["total_samples"] = n_total
    # the sample-quality thresholds are for 100,000 points; this is a memory probe of a few dozen
    d["sampling"].setdefault("validation", {}).update(check_discrepancy=False, check_correlation=False,
                                                     check_stratification=False)
    d["simulation"].update(num_timesteps=t, num_realizations=m, device="cpu")
    d["dataset"]["storage"]["shard_size"] = shard
    d["features"]["initial"] = {"enabled": True}
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "rss.yaml"
        p.write_text(yaml.safe_dump(d))
        r = subprocess.run([sys.executable, "-c", RSS_CHILD, str(p), str(Path(tmp) / "home"), str(ROOT)],
                           capture_output=True, text=True, check=True)
        return {"experiment_operators": n_total, "shard_operators": shard, **json.loads(r.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    t = 64 if a.quick else 256
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "T": t, "M": 5, "grid": 64}
    out["families"] = family_costs(t, 5, 64, 2 if a.quick else 3)
    shard = 4 if a.quick else 8
    small = peak_rss(shard * 2, shard, t, 5, 64)
    big = peak_rss(shard * 8, shard, t, 5, 64)
    big_shard = peak_rss(shard * 4, shard * 4, t, 5, 64)
    out["peak_rss"] = {
        "experiment_n": small,
        "experiment_4n": big,
        "ratio_experiment_4x": big["peak_rss_mb"] / small["peak_rss_mb"],
        "shard_4x": big_shard,
        "ratio_shard_4x": big_shard["peak_rss_mb"] / small["peak_rss_mb"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
