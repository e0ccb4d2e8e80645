"""Each stage as one call: compute, check the arrays in memory, then write its file atomically,
to the reader path when every blocking check passed and to quarantine otherwise (used by the
Dagster assets, the tests and notebooks alike)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from ..config.experiment import ExperimentConfig
from ..sampling import SamplingQuality
from ..storage.layout import PATHS, encode_strings
from ..storage.paths import ExperimentPaths
from ..storage.shards import CommitResult, StorageError, WriteStats, commit_stage_file, quarantine_reason, read_stage_file
from ..validation import CheckReport, feature_checks, initial_condition_checks, parameter_checks, rollout_checks
from .initial import ic_types_for, initial_conditions_for
from .parameters import sample_parameters
from .simulate import Progress, ShardSimulation, simulate_operators

__all__ = [
    "write_parameters",
    "write_initial_conditions",
    "write_rollouts",
    "simulate_shard",
    "write_feature_family",
    "ShardResult",
    "StageResult",
    "load_shard_inputs",
]


@dataclass
class StageResult:
    """One stage's write: where it went, its checks, and the stage's wall time."""

    write: WriteStats
    seconds_total: float
    checks: list[CheckReport] = field(default_factory=list)
    quarantined: bool = False

    @property
    def write_share(self) -> float:
        return self.write.seconds / max(self.seconds_total, 1e-12)


def _result(commit: CommitResult, checks: list[CheckReport], seconds: float) -> StageResult:
    return StageResult(commit.write, seconds, checks, commit.quarantined)


def write_parameters(cfg: ExperimentConfig, paths: ExperimentPaths) -> tuple[StageResult, np.ndarray, SamplingQuality]:
    """Sample the parameters, check the sample (blocking: ``sobol_discrepancy``) and write
    ``parameters.h5`` (metrics as ``sampling_*`` attributes), or its quarantine file."""
    t0 = time.perf_counter()
    unit, q = sample_parameters(cfg)
    checks = parameter_checks(cfg, q)
    metrics = {k: v for k, v in q.as_dict().items() if k != "blocks"}
    attrs = {f"sampling_{k}": v for k, v in metrics.items() if not isinstance(v, list)}
    attrs["sampling_metrics"] = json.dumps(q.as_dict())
    attrs["parameter_names"] = json.dumps(cfg.parameter_space.names)
    commit = commit_stage_file(
        paths.parameters, paths.quarantined_parameters, "parameters", cfg, {PATHS.PARAMS: unit}, checks, attrs=attrs,
        dataset_attrs={PATHS.PARAMS: {"feature_names": cfg.parameter_space.names}},
    )
    return _result(commit, checks, time.perf_counter() - t0), unit, q


def write_initial_conditions(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int) -> tuple[StageResult, np.ndarray, np.ndarray]:
    """Generate, check and write shard ``shard``'s ICs; returns ``(result, ic_types [n], fields [n, C, H, W])``."""
    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    idx = np.arange(start, stop)
    types = ic_types_for(cfg, idx)
    fields = initial_conditions_for(cfg, idx, types)
    arrays = {PATHS.INPUT_FIELDS: fields, PATHS.IC_TYPES: encode_strings(types), PATHS.OPERATOR_INDEX: idx}
    checks = initial_condition_checks(cfg, arrays, start, stop)
    commit = commit_stage_file(
        paths.shard("initial_conditions", shard), paths.quarantined_shard("initial_conditions", shard),
        "initial_conditions", cfg, arrays, checks, attrs={"shard": shard, "start": start, "stop": stop},
    )
    return _result(commit, checks, time.perf_counter() - t0), types, fields


def _read_input(path, stage: str, cfg: ExperimentConfig, quarantined) -> dict[str, np.ndarray]:
    reason = quarantine_reason(quarantined)
    if reason is not None and not path.exists():
        raise StorageError(f"{path}: not available: the last write was quarantined ({reason}); fix and re-materialize it")
    return read_stage_file(path, stage, cfg)


def load_shard_inputs(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices [n], unit [n, P], ics [n, C, H, W])`` of a shard from the parameters and IC files.

    Raises:
        StorageError: an input is missing, quarantined or was made from another config.
    """
    start, stop = cfg.shard_range(shard)
    unit = _read_input(paths.parameters, "parameters", cfg, paths.quarantined_parameters)[PATHS.PARAMS][start:stop]
    ics = _read_input(paths.shard("initial_conditions", shard), "initial_conditions", cfg,
                      paths.quarantined_shard("initial_conditions", shard))[PATHS.INPUT_FIELDS]
    return np.arange(start, stop), unit, ics


def write_rollouts(
    cfg: ExperimentConfig, paths: ExperimentPaths, shard: int, *, device: str | None = None,
    progress: Progress | None = None, consumers=(),
) -> tuple[StageResult, ShardSimulation]:
    """Roll out shard ``shard`` and write its ``rollouts`` file."""
    res = simulate_shard(cfg, paths, shard, families=set(), device=device, progress=progress, consumers=consumers)
    return res.stages["rollouts"], res.simulation


@dataclass
class ShardResult:
    simulation: ShardSimulation
    #: stage -> result of writing its file (with its checks)
    stages: dict[str, StageResult]
    #: stage -> {dataset path: array} of the feature families computed
    features: dict[str, dict[str, np.ndarray]]
    feature_seconds: dict[str, float]
    seconds_total: float

    @property
    def write_seconds(self) -> float:
        return sum(r.write.seconds for r in self.stages.values())


def _feature_attrs(cfg: ExperimentConfig, family: str, paths_in_stage) -> dict:
    from ..features.families import FAMILIES, feature_names

    names = feature_names(family, cfg)
    v = FAMILIES[family].version
    return {p: {"feature_names": list(names[p]), "version": v} for p in paths_in_stage}


def _commit_family(cfg, paths, shard: int, family: str, arrays: dict, attrs: dict) -> tuple[CommitResult, list[CheckReport]]:
    from ..features.families import FAMILIES

    start, stop = cfg.shard_range(shard)
    stage = FAMILIES[family].stage
    checks = feature_checks(cfg, family, arrays, start, stop)
    commit = commit_stage_file(
        paths.shard(stage, shard), paths.quarantined_shard(stage, shard), stage, cfg, arrays, checks,
        attrs={**attrs, "family": family, "version": FAMILIES[family].version},
        dataset_attrs=_feature_attrs(cfg, family, arrays),
    )
    return commit, checks


def simulate_shard(
    cfg: ExperimentConfig, paths: ExperimentPaths, shard: int, *, families: set[str], write_rollout_file: bool = True,
    device: str | None = None, progress: Progress | None = None, consumers=(),
) -> ShardResult:
    """Roll out shard ``shard``, extracting the rollout-derived feature ``families`` (subset of
    ``{"summary", "temporal"}``) batch by batch inside the loop, then check and write the
    ``rollouts`` file (unless ``write_rollout_file`` is False) and one file per family. Each file
    is gated by its own blocking checks: a family with undocumented NaN is quarantined while the
    others are written."""
    from ..features.extract import RolloutFeatures
    from ..features.families import FAMILIES

    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    idx, unit, ics = load_shard_inputs(cfg, paths, shard)
    collector = RolloutFeatures(cfg, start, stop - start, families) if families else None
    sim = simulate_operators(
        cfg, idx, unit, ics, device=device, progress=progress,
        consumers=[*consumers, *([collector] if collector else [])],
    )
    attrs = {"shard": shard, "start": start, "stop": stop, "device": sim.device}
    commits: dict[str, tuple[CommitResult, list[CheckReport]]] = {}
    features = collector.stage_arrays() if collector else {}
    if write_rollout_file:
        arrays = sim.rollout_arrays()
        checks = rollout_checks(cfg, arrays, start, stop)
        commits["rollouts"] = (commit_stage_file(
            paths.shard("rollouts", shard), paths.quarantined_shard("rollouts", shard), "rollouts", cfg, arrays, checks,
            attrs=attrs), checks)
    for fam in families:
        commits[FAMILIES[fam].stage] = _commit_family(cfg, paths, shard, fam, features[FAMILIES[fam].stage], attrs)
    total = time.perf_counter() - t0
    stages = {s: _result(c, checks, total) for s, (c, checks) in commits.items()}
    return ShardResult(sim, stages, features, dict(collector.seconds) if collector else {}, total)


def write_feature_family(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int, family: str) -> tuple[StageResult, np.ndarray]:
    """Compute, check and write a family that needs no rollout (``architecture`` or ``initial``)."""
    from ..features.extract import architecture_features, initial_family

    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    if family == "architecture":
        unit = _read_input(paths.parameters, "parameters", cfg, paths.quarantined_parameters)[PATHS.PARAMS][start:stop]
        values = architecture_features(cfg, unit)
        path = PATHS.ARCHITECTURE
    elif family == "initial":
        ics = _read_input(paths.shard("initial_conditions", shard), "initial_conditions", cfg,
                          paths.quarantined_shard("initial_conditions", shard))[PATHS.INPUT_FIELDS]
        values = initial_family(ics)
        path = PATHS.INITIAL
    else:
        raise ValueError(f"family {family!r} is computed inside the rollout loop (simulate_shard)")
    commit, checks = _commit_family(cfg, paths, shard, family, {path: values}, {"shard": shard, "start": start, "stop": stop})
    return _result(commit, checks, time.perf_counter() - t0), values
