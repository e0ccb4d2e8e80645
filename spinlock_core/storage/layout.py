"""The on-disk layout: every HDF5 dataset Spinlock writes, with its shape, dtype and chunking.

One module used by the shard writer, the consolidating writer, the reader and the asset checks.
Shard files (one per pipeline stage and partition) use the same dataset paths as the consolidated
file, so consolidation is a concatenation along the operator axis ``N``.

Consolidated layout (the seed's, plus ``metadata/diverged``)::

    inputs/fields                                 [N, C, H, W]        float32
    outputs/fields (store_trajectories only)      [N, M, T, C, H, W]  float32
    parameters/params                             [N, P]              float32  (unit-cube values)
    features/summary/aggregated/features          [N, 360]            float32
    features/summary/per_trajectory/features      [N, M, 120]         float32
    features/temporal/features                    [N, T, 63]          float32
    features/architecture/aggregated/features     [N, P]              float32
    features/initial/features                     [N, 42]             float32
    metadata/ic_types                             [N]                 |S   (fixed-length ASCII)
    metadata/evolution_policies                   [N]                 |S
    metadata/grid_sizes                           [N]                 int32
    metadata/noise_regimes                        [N]                 |S
    metadata/diverged                             [N]                 bool
    metadata/operator_index                       [N]                 int64

Every file also has the root attribute ``sha256``: JSON ``{dataset path: hex SHA-256}`` of each
dataset's content (:mod:`spinlock_core.storage.integrity`); chunked datasets use ``fletcher32``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config.experiment import ExperimentConfig

__all__ = [
    "LAYOUT_VERSION",
    "DatasetSpec",
    "STAGES",
    "stage_specs",
    "STRING_DTYPE",
    "ATTR_FEATURE_NAMES",
    "ATTR_VERSION",
    "compression_kwargs",
    "chunks_for",
    "encode_strings",
    "PATHS",
    "layout_version_problem",
]

#: Bump when a file of the previous version must not be read as this one (readers then ask for a
#: re-materialization, :func:`layout_version_problem`).
#: 1.1: a ``sha256`` root attribute (JSON ``{dataset path: digest}``, :mod:`.integrity`) is required,
#: chunked datasets carry ``fletcher32``, and no ``created`` timestamp is written (files are
#: byte-deterministic).
LAYOUT_VERSION = "1.1"
STRING_DTYPE = np.dtype("S40")
ATTR_FEATURE_NAMES = "feature_names"
ATTR_VERSION = "version"


class PATHS:
    INPUT_FIELDS = "inputs/fields"
    OUTPUT_FIELDS = "outputs/fields"
    PARAMS = "parameters/params"
    IC_TYPES = "metadata/ic_types"
    POLICIES = "metadata/evolution_policies"
    GRID_SIZES = "metadata/grid_sizes"
    NOISE_REGIMES = "metadata/noise_regimes"
    DIVERGED = "metadata/diverged"
    VALID_STATES = "metadata/valid_states"
    OPERATOR_INDEX = "metadata/operator_index"
    SUMMARY_AGG = "features/summary/aggregated/features"
    SUMMARY_TRAJ = "features/summary/per_trajectory/features"
    TEMPORAL = "features/temporal/features"
    ARCHITECTURE = "features/architecture/aggregated/features"
    INITIAL = "features/initial/features"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: ``path``, ``dtype`` and the trailing shape (after ``N``) for a config."""

    path: str
    dtype: np.dtype
    trailing: Callable[[ExperimentConfig], tuple[int, ...]]
    #: only present when this returns True for the config
    enabled: Callable[[ExperimentConfig], bool] = lambda cfg: True
    #: compress with the configured filter (small metadata arrays are written plain)
    compress: bool = True

    def shape(self, cfg: ExperimentConfig, n: int) -> tuple[int, ...]:
        return (n, *self.trailing(cfg))


def _chw(cfg):
    return (cfg.simulation.num_channels, cfg.grid_size, cfg.grid_size)


_F32, _I32, _I64, _B = np.dtype("float32"), np.dtype("int32"), np.dtype("int64"), np.dtype("bool")

#: stage (one asset's shard files) -> its datasets
STAGES: dict[str, tuple[DatasetSpec, ...]] = {
    "parameters": (DatasetSpec(PATHS.PARAMS, _F32, lambda c: (c.parameter_space.dim,)),),
    "initial_conditions": (
        DatasetSpec(PATHS.INPUT_FIELDS, _F32, _chw),
        DatasetSpec(PATHS.IC_TYPES, STRING_DTYPE, lambda c: (), compress=False),
        DatasetSpec(PATHS.OPERATOR_INDEX, _I64, lambda c: (), compress=False),
    ),
    "rollouts": (
        DatasetSpec(PATHS.POLICIES, STRING_DTYPE, lambda c: (), compress=False),
        DatasetSpec(PATHS.GRID_SIZES, _I32, lambda c: (), compress=False),
        DatasetSpec(PATHS.NOISE_REGIMES, STRING_DTYPE, lambda c: (), compress=False),
        DatasetSpec(PATHS.DIVERGED, _B, lambda c: (), compress=False),
        DatasetSpec(PATHS.VALID_STATES, _I32, lambda c: (), compress=False),
        DatasetSpec(
            PATHS.OUTPUT_FIELDS,
            _F32,
            lambda c: (c.simulation.num_realizations, c.simulation.num_timesteps, *_chw(c)),
            enabled=lambda c: c.dataset.storage.store_trajectories,
        ),
    ),
    "features_summary": (
        DatasetSpec(PATHS.SUMMARY_AGG, _F32, lambda c: (360,)),
        DatasetSpec(PATHS.SUMMARY_TRAJ, _F32, lambda c: (c.simulation.num_realizations, 120)),
    ),
    "features_temporal": (DatasetSpec(PATHS.TEMPORAL, _F32, lambda c: (c.simulation.num_timesteps, 63)),),
    "features_architecture": (DatasetSpec(PATHS.ARCHITECTURE, _F32, lambda c: (c.parameter_space.dim,)),),
    "features_initial": (DatasetSpec(PATHS.INITIAL, _F32, lambda c: (42,)),),
}


def stage_specs(stage: str, cfg: ExperimentConfig) -> tuple[DatasetSpec, ...]:
    """The datasets of ``stage`` present for ``cfg``."""
    if stage not in STAGES:
        raise ValueError(f"unknown storage stage {stage!r}; known: {sorted(STAGES)}")
    return tuple(s for s in STAGES[stage] if s.enabled(cfg))


def compression_kwargs(cfg: ExperimentConfig) -> dict:
    """h5py ``create_dataset`` filter arguments from ``dataset.storage``.

    gzip at its level or lzf, always with the shuffle filter (it makes gzip on float32 both faster
    and smaller); ``none`` writes unfiltered chunks.
    """
    st = cfg.dataset.storage
    if st.compression == "gzip":
        return {"compression": "gzip", "compression_opts": st.compression_level, "shuffle": True}
    if st.compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


def chunks_for(shape: tuple[int, ...], cfg: ExperimentConfig) -> tuple[int, ...]:
    """``chunk_size`` operators along ``N`` with the rest whole, capped at about 4 MiB per chunk
    by shrinking the leading trailing axes (trajectories: one realisation, a few states)."""
    n = max(1, min(cfg.dataset.storage.chunk_size, shape[0]))
    chunk = [n, *shape[1:]]
    budget = 4 * 2**20 // 4
    i = 0
    while int(np.prod(chunk)) > budget and i < len(chunk):
        if chunk[i] > 1:
            chunk[i] = max(1, chunk[i] // 2)
        else:
            i += 1
    return tuple(int(c) for c in chunk)


def encode_strings(values) -> np.ndarray:
    """Labels -> fixed-length ASCII (``f[...][:].astype(str)`` gives them back)."""
    arr = np.asarray([str(v) for v in values])
    too_long = [v for v in arr if len(v.encode()) > STRING_DTYPE.itemsize]
    if too_long:
        raise ValueError(f"label too long for the {STRING_DTYPE} string layout: {too_long[0]!r}")
    return arr.astype(STRING_DTYPE)


def _version_tuple(v) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(v.decode() if isinstance(v, bytes) else v).split("."))
    except (ValueError, AttributeError):
        return None


def layout_version_problem(file_version) -> str | None:
    """Why a file written with layout ``file_version`` (its ``layout_version`` attribute; None
    when absent) cannot be read by this code, or None when it can (the same version).

    A newer layout says so and asks for an upgrade: its datasets may have other shapes or
    meanings, and reading them as this layout would silently misread them.
    """
    if file_version is None:
        return "not a Spinlock file (no layout_version attribute)"
    got, ours = _version_tuple(file_version), _version_tuple(LAYOUT_VERSION)
    if got is None:
        return f"unreadable layout_version {file_version!r}"
    if got > ours:
        return (f"written with layout {'.'.join(map(str, got))}, newer than this code reads ({LAYOUT_VERSION}): "
                "upgrade spinlock to read it")
    if got < ours:
        return f"written with the older layout {'.'.join(map(str, got))} (this code writes {LAYOUT_VERSION}): re-materialize it"
    return None
