"""Production-settings smoke run: one shard of the production config, features checked. Prints JSON.

The behaviour guarantees (no inert parameter, no constant or saturated feature, realizations that
differ) are tested on the small demo config; this runs the same stages with the production
config's parameter space, grid, dt, T and M (``configs/experiments/100k_full_features.yaml``) on
the first ``--operators`` operators of its Sobol sample (the parameter sample is the production
one: the first 32 of 100,000 points) and reports:

* ``checks``: every check of every stage that did not pass (constant and saturated columns among them);
* ``parameters``: per sampled parameter, the largest |Spearman rho| between its values and any
  SUMMARY aggregated column (``_mean``, ``_std``, ``_cv``), and the column, next to the chance
  level: the 95th percentile of the same maximum over 20 random permutations of the parameter
  (for 32 operators and 360 columns the maximum of pure noise is high);
* ``realization_spread``: per SUMMARY column, the mean over operators of the standard deviation
  over realizations divided by the standard deviation across operators of the realization means;
  its median over columns, and the share of operators whose realizations are identical;
* ``seconds``: rollout, feature and total wall time.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        python benchmarks/production_smoke.py [--operators 32] [--timesteps 256] [--config PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock_core.config import load_experiment  # noqa: E402
from spinlock_core.features.summary import AGGREGATED_NAMES, SUMMARY_NAMES  # noqa: E402
from spinlock_core.generation import (  # noqa: E402
    decoded_parameters,
    simulate_shard,
    write_feature_family,
    write_initial_conditions,
    write_parameters,
)
from spinlock_core.storage.layout import PATHS  # noqa: E402
from spinlock_core.storage.paths import ExperimentPaths  # noqa: E402

PRODUCTION = ROOT / "configs/experiments/100k_full_features.yaml"


def smoke_config(path: Path, operators: int, timesteps: int | None, folder: Path) -> Path:
    """The production config with ``operators`` samples in one shard (same seed, space, grid, dt, T, M)."""
    data = yaml.safe_load(path.read_text())
    data["sampling"]["total_samples"] = operators
    # the sample-quality thresholds are for the full 100,000-point sample, of which these are the
    # first points (its checks run on the whole sample in the real run)
    data["sampling"].setdefault("validation", {}).update(
        check_discrepancy=False, check_correlation=False, check_stratification=False)
    data["dataset"]["storage"]["shard_size"] = operators
    data["simulation"]["device"] = "auto"  # where it runs, not what it computes
    if timesteps is not None:
        data["simulation"]["num_timesteps"] = timesteps
    out = folder / "production_smoke.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def max_abs_spearman(x: np.ndarray, features: np.ndarray, names) -> tuple[float, str]:
    """Largest |Spearman rho| between ``x [n]`` and the columns of ``features [n, F]``, and that
    column's name (constant or non-finite columns and a constant ``x`` give 0)."""
    if np.ptp(x) == 0:
        return 0.0, ""
    ok = np.isfinite(features).all(axis=0) & (np.ptp(np.nan_to_num(features), axis=0) > 0)
    if not ok.any():
        return 0.0, ""
    rho = np.abs(spearmanr(np.column_stack([x, features[:, ok]])).statistic[0, 1:])
    j = int(np.nanargmax(rho))
    return float(rho[j]), str(np.asarray(names)[ok][j])


def parameter_influence(cfg, unit: np.ndarray, agg: np.ndarray, permutations: int = 20) -> dict:
    """Per sampled parameter: distinct values, the largest |Spearman rho| with any SUMMARY
    aggregated column (and which), and the chance level (95th percentile over permutations)."""
    decoded = decoded_parameters(unit, cfg)
    rng = np.random.default_rng(0)
    out = {}
    for name, values in decoded.items():
        x = np.asarray(values)
        x = np.unique(x, return_inverse=True)[1].astype(np.float64) if x.dtype.kind not in "fiub" else x.astype(np.float64)
        rho, col = max_abs_spearman(x, agg, AGGREGATED_NAMES)
        null = [max_abs_spearman(rng.permutation(x), agg, AGGREGATED_NAMES)[0] for _ in range(permutations)]
        out[name] = {"distinct_values": int(len(np.unique(x))), "max_abs_spearman": rho, "column": col,
                     "chance_level_p95": float(np.percentile(null, 95)) if null else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=PRODUCTION)
    ap.add_argument("--operators", type=int, default=32)
    ap.add_argument("--timesteps", type=int, default=None, help="override T (default: the config's)")
    ap.add_argument("--save", type=Path, default=None, help="also save the unit parameters and SUMMARY arrays (.npz)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_experiment(smoke_config(a.config, a.operators, a.timesteps, Path(tmp)))
        paths = ExperimentPaths.for_config(cfg, Path(tmp) / "home")
        results = {"parameters": write_parameters(cfg, paths)[0], "initial_conditions": write_initial_conditions(cfg, paths, 0)[0]}
        families = {f for f in ("summary", "temporal") if getattr(cfg.features, f).enabled}
        res = simulate_shard(cfg, paths, 0, families=families)
        results.update(res.stages)
        for fam in ("architecture", "initial"):
            if getattr(cfg.features, fam).enabled:
                results[f"features_{fam}"] = write_feature_family(cfg, paths, 0, fam)[0]
        failed = {
            f"{stage}/{c.name}": {"severity": c.severity, "description": c.description}
            for stage, r in results.items() for c in r.checks if not c.passed
        }
        summary = res.features["features_summary"]
        agg, per_traj = summary[PATHS.SUMMARY_AGG].astype(np.float64), summary[PATHS.SUMMARY_TRAJ].astype(np.float64)
        with __import__("h5py").File(paths.parameters, "r") as f:
            unit = f[PATHS.PARAMS][()]
    if a.save is not None:
        np.savez_compressed(a.save, unit=unit, aggregated=agg, per_trajectory=per_traj)
    params = parameter_influence(cfg, unit, agg)
    defined = np.isfinite(per_traj).all(axis=(0, 1))  # sensitivity columns are NaN when it is off
    pt = per_traj[:, :, defined]
    within = pt.std(axis=1, ddof=1).mean(axis=0)
    across = pt.mean(axis=1).std(axis=0, ddof=1)
    ok = across > 0
    spread = within[ok] / across[ok]
    identical = float(np.mean(np.all(pt.max(axis=1) == pt.min(axis=1), axis=1)))
    defined_names = np.asarray(SUMMARY_NAMES)[defined]
    out = {
        "config": str(a.config.relative_to(ROOT) if a.config.is_relative_to(ROOT) else a.config),
        "operators": cfg.sampling.total_samples,
        "grid": cfg.grid_size,
        "T": cfg.simulation.num_timesteps,
        "M": cfg.simulation.num_realizations,
        "dt": cfg.simulation.dt,
        "diverged": int(res.simulation.diverged.sum()),
        "checks_not_passed": failed,
        "parameters": params,
        "realization_spread": {
            "median_over_columns": float(np.median(spread)),
            "columns_without_spread": defined_names[ok][spread == 0].tolist(),
            "lowest_five": dict(sorted(zip(defined_names[ok].tolist(), spread.tolist()), key=lambda kv: kv[1])[:5]),
            "share_of_operators_with_identical_realizations": identical,
        },
        "seconds": {
            "rollout": res.simulation.seconds_rollout,
            "features": sum(res.feature_seconds.values()),
            "total": time.perf_counter() - t0,
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
