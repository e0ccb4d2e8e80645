"""Feature extraction inside the rollout loop, and the families that need no rollout.

:class:`RolloutFeatures` is a batch consumer for :func:`spinlock_core.generation.simulate_operators`:
each batch of trajectories ``[B, M, T, C, H, W]`` is described (TEMPORAL, SUMMARY, and the operator
sensitivity columns with the live operators) and then dropped, so a shard never holds more than
one batch of trajectories.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..config.experiment import ExperimentConfig
from ..sampling import normalized_params
from ..storage.layout import PATHS
from . import initial as _initial
from . import summary as _summary
from . import temporal as _temporal
from .families import FAMILIES
from .sensitivity import sensitivity_features

__all__ = ["RolloutFeatures", "architecture_features", "initial_family"]


class RolloutFeatures:
    """Accumulates the rollout-derived families of one shard (operators ``[start, start + n)``).

    Args:
        families: subset of ``{"summary", "temporal"}`` to compute.
    """

    #: operators per SUMMARY call (bounds its intermediates; results do not depend on it)
    summary_chunk = 2

    def __init__(self, cfg: ExperimentConfig, start: int, n: int, families: set[str]):
        unknown = families - {"summary", "temporal"}
        if unknown:
            raise ValueError(f"not rollout-derived families: {sorted(unknown)}")
        self.cfg, self.start, self.n, self.families = cfg, start, n, families
        sim = cfg.simulation
        m, t = sim.num_realizations, sim.num_timesteps
        self.temporal = np.full((n, t, len(_temporal.TEMPORAL_NAMES)), np.nan, np.float32) if "temporal" in families else None
        self.per_traj = np.full((n, m, len(_summary.SUMMARY_NAMES)), np.nan, np.float32) if "summary" in families else None
        self.aggregated = np.full((n, len(_summary.AGGREGATED_NAMES)), np.nan, np.float32) if "summary" in families else None
        self.seen = np.zeros(n, dtype=bool)
        self.seconds = {"state_features": 0.0, "temporal": 0.0, "summary": 0.0, "sensitivity": 0.0}

    def __call__(self, indices: np.ndarray, trajectories: torch.Tensor, operators: list, specs: list) -> None:
        rows = np.asarray(indices) - self.start
        if rows.min() < 0 or rows.max() >= self.n:
            raise ValueError(f"operators {indices.tolist()} outside this shard [{self.start}, {self.start + self.n})")
        b, m, t = trajectories.shape[:3]
        t0 = time.perf_counter()
        sf = _temporal.state_features(trajectories.reshape(b * m * t, *trajectories.shape[3:])).reshape(b, m, t, -1)
        t1 = time.perf_counter()
        self.seconds["state_features"] += t1 - t0
        if self.temporal is not None:
            self.temporal[rows] = sf.mean(1).cpu().numpy()
        t2 = time.perf_counter()
        self.seconds["temporal"] += t2 - t1
        if self.per_traj is not None:
            sens = None
            if self.cfg.features.summary.extract_operator_features:
                sens = torch.stack([
                    sensitivity_features(op, trajectories[i], root_seed=self.cfg.root_seed, index=int(indices[i]))
                    for i, op in enumerate(operators)
                ])
            t3 = time.perf_counter()
            self.seconds["sensitivity"] += t3 - t2
            # a few operators at a time: the SUMMARY intermediates are several times the raw fields
            for i in range(0, b, self.summary_chunk):
                sl = slice(i, i + self.summary_chunk)
                pt = _summary.per_trajectory_features(trajectories[sl], sf[sl], None if sens is None else sens[sl])
                self.per_traj[rows[sl]] = pt.cpu().numpy()
                self.aggregated[rows[sl]] = _summary.aggregate(pt).cpu().numpy()
            self.seconds["summary"] += time.perf_counter() - t3
        self.seen[rows] = True

    def stage_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """``{stage: {dataset path: array}}`` for the computed families."""
        if not self.seen.all():
            missing = (np.flatnonzero(~self.seen) + self.start)[:10].tolist()
            raise ValueError(f"features missing for operators {missing}...")
        out = {}
        if self.per_traj is not None:
            out[FAMILIES["summary"].stage] = {PATHS.SUMMARY_AGG: self.aggregated, PATHS.SUMMARY_TRAJ: self.per_traj}
        if self.temporal is not None:
            out[FAMILIES["temporal"].stage] = {PATHS.TEMPORAL: self.temporal}
        return out


def architecture_features(cfg: ExperimentConfig, unit: np.ndarray) -> np.ndarray:
    """ARCHITECTURE ``[n, P]``: decoded parameters normalised to [0, 1] (FEATURES.md)."""
    return normalized_params(np.asarray(unit, dtype=np.float64), cfg.parameter_space)


def initial_family(ics: np.ndarray) -> np.ndarray:
    """INITIAL ``[n, 42]`` from initial conditions ``[n, C, H, W]``."""
    return _initial.initial_features(torch.from_numpy(np.ascontiguousarray(ics))).numpy()
