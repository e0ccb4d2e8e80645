"""HDF5 storage: the layout spec, atomic shard writes, the consolidated dataset and its reader."""

from .dataset import consolidate, describe
from .layout import LAYOUT_VERSION, PATHS, STAGES, stage_specs
from .paths import ExperimentPaths, spinlock_home
from .shards import StorageError, check_stage_file, read_stage_file, write_stage_file

__all__ = [
    "LAYOUT_VERSION",
    "PATHS",
    "STAGES",
    "stage_specs",
    "ExperimentPaths",
    "spinlock_home",
    "StorageError",
    "write_stage_file",
    "read_stage_file",
    "check_stage_file",
    "consolidate",
    "describe",
]
