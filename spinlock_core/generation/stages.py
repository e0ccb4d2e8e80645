"""Each stage as one call: compute, then write its file atomically (used by the Dagster assets,
the tests and notebooks alike)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..config.experiment import ExperimentConfig
from ..sampling import SamplingQuality
from ..storage.layout import PATHS, encode_strings
from ..storage.paths import ExperimentPaths
from ..storage.shards import WriteStats, open_h5, read_stage_file, write_stage_file
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
    write: WriteStats
    seconds_total: float

    @property
    def write_share(self) -> float:
        return self.write.seconds / max(self.seconds_total, 1e-12)


def write_parameters(cfg: ExperimentConfig, paths: ExperimentPaths) -> tuple[StageResult, np.ndarray, SamplingQuality]:
    """Sample the parameters and write ``parameters.h5`` (metrics as ``sampling_*`` attributes)."""
    t0 = time.perf_counter()
    unit, q = sample_parameters(cfg)
    attrs = {f"sampling_{k}": v for k, v in q.as_dict().items() if not isinstance(v, list)}
    attrs["sampling_metrics"] = json.dumps(q.as_dict())
    attrs["parameter_names"] = json.dumps(cfg.parameter_space.names)
    stats = write_stage_file(
        paths.parameters, "parameters", cfg, {PATHS.PARAMS: unit}, attrs=attrs,
        dataset_attrs={PATHS.PARAMS: {"feature_names": cfg.parameter_space.names}},
    )
    return StageResult(stats, time.perf_counter() - t0), unit, q


def write_initial_conditions(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int) -> tuple[StageResult, np.ndarray, np.ndarray]:
    """Generate and write shard ``shard``'s ICs; returns ``(result, ic_types [n], fields [n, C, H, W])``."""
    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    idx = np.arange(start, stop)
    types = ic_types_for(cfg, idx)
    fields = initial_conditions_for(cfg, idx, types)
    stats = write_stage_file(
        paths.shard("initial_conditions", shard), "initial_conditions", cfg,
        {PATHS.INPUT_FIELDS: fields, PATHS.IC_TYPES: encode_strings(types), PATHS.OPERATOR_INDEX: idx},
        attrs={"shard": shard, "start": start, "stop": stop},
    )
    return StageResult(stats, time.perf_counter() - t0), types, fields


def load_shard_inputs(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices [n], unit [n, P], ics [n, C, H, W])`` of a shard from the parameters and IC files."""
    start, stop = cfg.shard_range(shard)
    with open_h5(paths.parameters) as f:
        unit = f[PATHS.PARAMS][start:stop]
    ics = read_stage_file(paths.shard("initial_conditions", shard), "initial_conditions", cfg)[PATHS.INPUT_FIELDS]
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
    #: stage -> result of writing its file
    stages: dict[str, StageResult]
    #: stage -> {dataset path: array} of the feature families computed
    features: dict[str, dict[str, np.ndarray]]
    feature_seconds: dict[str, float]
    seconds_total: float

    @property
    def write_seconds(self) -> float:
        return sum(r.write.seconds for r in self.stages.values())


def simulate_shard(
    cfg: ExperimentConfig, paths: ExperimentPaths, shard: int, *, families: set[str], write_rollout_file: bool = True,
    device: str | None = None, progress: Progress | None = None, consumers=(),
) -> ShardResult:
    """Roll out shard ``shard``, extracting the rollout-derived feature ``families`` (subset of
    ``{"summary", "temporal"}``) batch by batch inside the loop, then write the ``rollouts`` file
    (unless ``write_rollout_file`` is False) and one file per family."""
    from ..features.extract import RolloutFeatures
    from ..features.families import FAMILIES, feature_names

    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    idx, unit, ics = load_shard_inputs(cfg, paths, shard)
    collector = RolloutFeatures(cfg, start, stop - start, families) if families else None
    sim = simulate_operators(
        cfg, idx, unit, ics, device=device, progress=progress,
        consumers=[*consumers, *([collector] if collector else [])],
    )
    attrs = {"shard": shard, "start": start, "stop": stop, "device": sim.device}
    stages: dict[str, StageResult] = {}
    features = collector.stage_arrays() if collector else {}
    if write_rollout_file:
        stages["rollouts"] = StageResult(write_stage_file(paths.shard("rollouts", shard), "rollouts", cfg, sim.rollout_arrays(), attrs=attrs), 0.0)
    for fam in families:
        stage = FAMILIES[fam].stage
        names = feature_names(fam, cfg)
        stages[stage] = StageResult(write_stage_file(
            paths.shard(stage, shard), stage, cfg, features[stage], attrs={**attrs, "family": fam, "version": FAMILIES[fam].version},
            dataset_attrs={p: {"feature_names": list(names[p]), "version": FAMILIES[fam].version} for p in features[stage]},
        ), 0.0)
    total = time.perf_counter() - t0
    for r in stages.values():
        r.seconds_total = total
    return ShardResult(sim, stages, features, dict(collector.seconds) if collector else {}, total)


def write_feature_family(cfg: ExperimentConfig, paths: ExperimentPaths, shard: int, family: str) -> tuple[StageResult, np.ndarray]:
    """Compute and write a family that needs no rollout (``architecture`` or ``initial``)."""
    from ..features.extract import architecture_features, initial_family
    from ..features.families import FAMILIES, feature_names

    t0 = time.perf_counter()
    start, stop = cfg.shard_range(shard)
    fam = FAMILIES[family]
    if family == "architecture":
        with open_h5(paths.parameters) as f:
            values = architecture_features(cfg, f[PATHS.PARAMS][start:stop])
        path = PATHS.ARCHITECTURE
    elif family == "initial":
        ics = read_stage_file(paths.shard("initial_conditions", shard), "initial_conditions", cfg)[PATHS.INPUT_FIELDS]
        values = initial_family(ics)
        path = PATHS.INITIAL
    else:
        raise ValueError(f"family {family!r} is computed inside the rollout loop (simulate_shard)")
    names = feature_names(family, cfg)[path]
    stats = write_stage_file(
        paths.shard(fam.stage, shard), fam.stage, cfg, {path: values},
        attrs={"shard": shard, "start": start, "stop": stop, "family": family, "version": fam.version},
        dataset_attrs={path: {"feature_names": list(names), "version": fam.version}},
    )
    return StageResult(stats, time.perf_counter() - t0), values
