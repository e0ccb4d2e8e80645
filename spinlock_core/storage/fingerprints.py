"""What each stage's data depends on: its version and the config sections it reads.

Two fingerprints per stage, both SHA-256 of canonical JSON:

* ``code_version(cfg, stage)``: the stage's own version plus the config values the stage itself
  reads. It is the Dagster ``code_version`` of the stage's asset, so changing (say) the SUMMARY
  family's version or ``features.summary`` marks exactly ``features/summary`` as changed, and
  ``dataset.output_path`` only ``dataset``; Dagster propagates staleness down the lineage.
* ``stage_fingerprint(cfg, stage)``: the code versions of the stage and of every stage whose data
  it was computed from. It is written into every file and compared on read, so a shard made from
  other parameters or other initial conditions is never consolidated with the current ones.

A stage version changes when its numbers change for the same config (a new noise generator, a
redefined feature); bump it here or in the family's module.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config.experiment import ExperimentConfig

__all__ = ["STAGE_VERSIONS", "UPSTREAM", "stage_version", "stage_inputs", "code_version", "stage_fingerprint"]

#: versions of the stages that are not feature families (those carry their own ``VERSION``)
STAGE_VERSIONS: dict[str, str] = {
    "parameters": "1",
    "initial_conditions": "1",
    # 2: counter-based (Philox) noise and dropout draws instead of device torch.Generators
    "rollouts": "2",
}

#: stage -> the stages whose data it is computed from
UPSTREAM: dict[str, tuple[str, ...]] = {
    "parameters": (),
    "initial_conditions": (),
    "rollouts": ("parameters", "initial_conditions"),
    "features_summary": ("parameters", "initial_conditions"),
    "features_temporal": ("parameters", "initial_conditions"),
    "features_architecture": ("parameters",),
    "features_initial": ("initial_conditions",),
}


def _family_of(stage: str) -> str | None:
    return stage.removeprefix("features_") if stage.startswith("features_") else None


def stage_version(stage: str) -> str:
    """The version of ``stage`` (a feature family's ``version`` for ``features_*`` stages)."""
    fam = _family_of(stage)
    if fam is not None:
        from ..features.families import FAMILIES

        if fam not in FAMILIES:
            raise ValueError(f"unknown feature stage {stage!r}")
        return FAMILIES[fam].version
    if stage == "dataset":
        from .layout import LAYOUT_VERSION

        return LAYOUT_VERSION
    if stage not in STAGE_VERSIONS:
        raise ValueError(f"unknown stage {stage!r}; known: {sorted([*STAGE_VERSIONS, *UPSTREAM, 'dataset'])}")
    return STAGE_VERSIONS[stage]


def _partition(cfg: ExperimentConfig) -> dict:
    # a shard's operators [start, stop) follow from these
    return {"shard_size": cfg.dataset.storage.shard_size, "total_samples": cfg.sampling.total_samples}


def _simulation(cfg: ExperimentConfig) -> dict:
    sim = cfg.simulation.model_dump(mode="json")
    sim.pop("input_generation")
    sim.pop("device")  # where it runs, not what it computes
    sim.pop("batching")  # how many operators a call advances: float32 rounding only, like the device
    return {"simulation": sim, "grid_size": cfg.grid_size, "root_seed": cfg.root_seed, "noise_generator": noise_generator_name()}


def noise_generator_name() -> str:
    try:
        from ..rng import GENERATOR
    except ImportError:  # pragma: no cover - the rng package is part of the library
        return "unknown"
    return GENERATOR


def stage_inputs(cfg: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The config values ``stage`` itself reads (JSON-serialisable)."""
    fam = _family_of(stage)
    if stage == "parameters":
        return {
            "parameter_space": cfg.parameter_space.model_dump(mode="json"),
            "sobol": cfg.sampling.sobol.model_dump(mode="json"),
            "total_samples": cfg.sampling.total_samples,
        }
    if stage == "initial_conditions":
        ig = cfg.simulation.input_generation
        return {
            "input_generation": ig.model_dump(mode="json"),
            "num_channels": cfg.simulation.num_channels,
            "grid_size": cfg.grid_size,
            "root_seed": cfg.root_seed,
            **_partition(cfg),
        }
    if stage == "rollouts":
        return {**_simulation(cfg), "store_trajectories": cfg.dataset.storage.store_trajectories, **_partition(cfg)}
    if fam in ("summary", "temporal"):
        # computed in the rollout loop: they read what the rollouts read
        return {"family": getattr(cfg.features, fam).model_dump(mode="json"), **_simulation(cfg), **_partition(cfg)}
    if fam == "architecture":
        return {"family": cfg.features.architecture.model_dump(mode="json"),
                "parameter_space": cfg.parameter_space.model_dump(mode="json"), **_partition(cfg)}
    if fam == "initial":
        return {"family": cfg.features.initial.model_dump(mode="json"), **_partition(cfg)}
    if stage == "dataset":
        st = cfg.dataset.storage
        return {"output_path": cfg.dataset.output_path, "compression": st.compression,
                "compression_level": st.compression_level, "chunk_size": st.chunk_size}
    raise ValueError(f"unknown stage {stage!r}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def code_version(cfg: ExperimentConfig, stage: str) -> str:
    """``"<version>-<hash of the sections the stage reads>"`` (the asset's Dagster code version)."""
    return f"{stage_version(stage)}-{_digest({'stage': stage, 'inputs': stage_inputs(cfg, stage)})}"


def stage_fingerprint(cfg: ExperimentConfig, stage: str, *, upstream: tuple[str, ...] | None = None) -> str:
    """Hash of the code versions of ``stage`` and of the stages its data comes from (written into
    its files). ``upstream`` overrides the lineage (the dataset passes the stages it holds)."""
    ups = UPSTREAM.get(stage, ()) if upstream is None else upstream
    closure: set[str] = set()
    todo = [stage, *ups]
    while todo:
        s = todo.pop()
        if s not in closure:
            closure.add(s)
            todo.extend(UPSTREAM.get(s, ()))
    return _digest({s: code_version(cfg, s) for s in sorted(closure)})
