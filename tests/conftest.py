"""Shared fixtures: a tiny experiment config (seconds to simulate) and isolated data folders."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs two workers on 2 cores), each worker and the processes
    its tests start (Dagster runs, servers, CLIs) compute on one OpenMP thread: two workers of
    torch's default two threads each spin-wait against each other and ran the suite slower than
    one process. Read by torch when it loads, which is after this hook; tests that need more
    threads set them with ``torch.set_num_threads``. Without xdist nothing changes."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: test folders in the order they start: the slowest first (the end-to-end tests start Dagster
#: processes and servers, the asset tests materialize graphs), so that pytest-xdist hands out the
#: long files while the many short core files are left to even out the end of the run
FIRST = ("tests/e2e/", "tests/assets/")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next((i for i, p in enumerate(FIRST) if item.nodeid.startswith(p)), len(FIRST))

    items.sort(key=rank)  # stable: files and tests keep their order within a rank


TINY = {
    "version": "1.0",
    "metadata": {"name": "tiny", "description": "test"},
    "parameter_space": {
        "architecture": {
            "num_layers": {"type": "integer", "bounds": [1, 4]},
            "base_channels": {"type": "integer", "bounds": [2, 4]},
            "kernel_size": {"type": "choice", "choices": [3, 5]},
            "activation": {"type": "choice", "choices": ["gelu", "tanh"]},
            "dropout_rate": {"type": "continuous", "bounds": [0.0, 0.3]},
        },
        "stochastic": {
            "noise_scale": {"type": "continuous", "bounds": [0.001, 0.5], "log_scale": True},
            "spatial_correlation": {"type": "continuous", "bounds": [0.0, 0.3]},
            "noise_schedule": {"type": "choice", "choices": ["constant", "annealing", "periodic"]},
        },
        "operator": {"grid_size": {"type": "choice", "choices": [16]}},
        "evolution": {
            "update_policy": {"type": "choice", "choices": ["residual", "convex"], "weights": [0.75, 0.25]},
            "dt": {"type": "continuous", "bounds": [0.05, 0.5]},
        },
    },
    "sampling": {
        "sobol": {"scramble": True, "seed": 7},
        "stratification": {"num_strata_per_dim": 2, "min_samples_per_stratum": 1},
        "validation": {"max_discrepancy": 0.5, "max_correlation": 0.9},
        "total_samples": 24,
        "batch_size": 4,
    },
    "simulation": {
        "device": "cpu",
        "input_generation": {
            "ic_type_weights": {"gaussian_random_field": 0.25, "multiscale_grf_low": 0.25, "structured": 0.25, "localized": 0.25},
            "gaussian_random_field": {"length_scale": 0.1, "variance": 1.0},
            "multiscale_grf_low": {"scales": [0.3, 0.4], "variance": 1.0},
            "structured": {"num_modes": 1, "wavelength_range": [4.0, 16.0]},
            "localized": {"num_blobs": 3, "min_width": 1.5, "max_width": 3.0},
        },
        "num_realizations": 2,
        "num_timesteps": 6,
    },
    "dataset": {
        "output_path": "datasets/tiny.h5",
        "storage": {"compression": "gzip", "compression_level": 4, "chunk_size": 4, "shard_size": 8},
    },
    "features": {"summary": {"extract_operator_features": False}},
}


#: a tokenizer small enough to train in seconds on a 96-operator tiny dataset (SUMMARY, TEMPORAL,
#: ARCHITECTURE): ``TokenizerConfig.model_validate(TINY_TOKENIZER)``
TINY_TOKENIZER = {
    "families": {
        "summary": {"encoder": "IdentityEncoder", "blocks": ["mean"]},
        "temporal": {"encoder": "TemporalCNNEncoder",
                     "encoder_params": {"embedding_dim": 6, "architecture": "resnet1d_1", "hidden_channels": 8},
                     "pretrain": {"steps": 30, "batch_size": 32}},
        "architecture": {"encoder": "IdentityEncoder"},
    },
    "cleaning": {"min_stratum_size": 10},
    "model": {"num_categories": 4, "group_embedding_dim": 8, "group_hidden_dim": 16, "codebook_scale": 1,
              "threshold_ema_dead_code": 0.1, "decoder_hidden_dims": [32], "kmeans_init": False},
    "training": {"batch_size": 32, "max_steps": 60, "warmup_steps": 5, "val_every_steps": 20,
                 "dead_code_reset_interval": 30, "device": "cpu", "min_val_quality": 0.0, "min_val_utilization": 0.0},
}


def tiny_dict(**overrides) -> dict:
    """A deep copy of the tiny config with dotted-path overrides, e.g. ``{"sampling.total_samples": 8}``."""
    d = copy.deepcopy(TINY)
    for dotted, value in overrides.items():
        node = d
        *parts, last = dotted.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return d


_DELETE = "__delete__"


@pytest.fixture
def delete():
    return _DELETE


@pytest.fixture
def write_config(tmp_path):
    def write(name: str = "tiny.yaml", data: dict | None = None, **overrides) -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data if data is not None else tiny_dict(**{k.replace("__", "."): v for k, v in overrides.items()}), sort_keys=False))
        return p

    return write


@pytest.fixture
def tiny_config(write_config):
    from spinlock_core.config import load_experiment

    return load_experiment(write_config())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINLOCK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_DISABLE_TELEMETRY", "1")


def build_dataset(root: Path, **overrides):
    """A consolidated tiny dataset (SUMMARY, TEMPORAL, ARCHITECTURE) under ``root``, built with the
    library (no Dagster); ``overrides`` are dotted paths as in :func:`tiny_dict`. Returns its
    ``ExperimentPaths``."""
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import simulate_shard, write_feature_family, write_initial_conditions, write_parameters
    from spinlock_core.storage.dataset import consolidate
    from spinlock_core.storage.paths import ExperimentPaths

    p = root / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_dict(**overrides), sort_keys=False))
    cfg = load_experiment(p)
    paths = ExperimentPaths.for_config(cfg, root / "home")
    write_parameters(cfg, paths)
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        simulate_shard(cfg, paths, s, families={"summary", "temporal"})
        write_feature_family(cfg, paths, s, "architecture")
    consolidate(cfg, paths, ["initial_conditions", "rollouts", "features_summary", "features_temporal",
                             "features_architecture"])
    return paths
