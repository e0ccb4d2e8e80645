"""The tokenizer's reads of a consolidated dataset: families, blocks, chunks and clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spinlock_core.features.summary import SUMMARY_NAMES
from spinlock_core.storage.layout import PATHS
from spinlock_core.tokenizer.data import FeatureFile, TokenizerDataError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tests.conftest import build_dataset

    root = tmp_path_factory.mktemp("tokdata")
    return build_dataset(root, **{"sampling.total_samples": 16, "simulation.num_timesteps": 5}).dataset


def test_summary_blocks_select_the_right_columns(dataset):
    ff = FeatureFile(dataset)
    assert ff.n == 16 and set(ff.families) == {"summary", "temporal", "architecture"}
    with h5py.File(dataset, "r") as f:
        agg = f[PATHS.SUMMARY_AGG][()].astype(np.float64)
    x, names = ff.matrix("summary", blocks=("mean",))
    assert x.shape == (16, 120) and names[0] == f"{SUMMARY_NAMES[0]}_mean"
    np.testing.assert_array_equal(x, agg[:, :120])
    x, names = ff.matrix("summary", blocks=("cv", "mean"))
    np.testing.assert_array_equal(x[:, :120], agg[:, 240:]) and names[0].endswith("_cv")
    np.testing.assert_array_equal(x[:, 120:], agg[:, :120])
    per, pn = ff.per_realization()
    assert per.shape == (16, 2, 120) and pn == list(SUMMARY_NAMES)
    np.testing.assert_allclose(per.mean(1), agg[:, :120], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_temporal_chunks_cover_every_row_once_and_skip_state_0(dataset):
    ff = FeatureFile(dataset)
    with h5py.File(dataset, "r") as f:
        full = f[PATHS.TEMPORAL][()]
    seen = []
    for rows, x in ff.temporal_chunks(chunk=5):
        assert x.shape == (len(rows), 4, 63) and len(rows) <= 5
        np.testing.assert_array_equal(x, full[rows, 1:])
        seen += rows.tolist()
    assert seen == list(range(16))
    sparse = np.array([0, 7, 15])
    (rows, x), = list(ff.temporal_chunks(states=slice(0, None), chunk=8, rows=sparse))
    np.testing.assert_array_equal(x, full[sparse])
    with pytest.raises(TokenizerDataError, match="sorted, unique"):
        list(ff.temporal_chunks(rows=np.array([3, 1])))


def test_missing_family_and_wrong_columns_are_named(dataset, tmp_path):
    ff = FeatureFile(dataset)
    with pytest.raises(TokenizerDataError, match=r"needs the initial family \(features/initial/features\).*holds: summary, temporal, architecture"):
        ff.matrix("initial")
    x, names = ff.matrix("architecture")
    with pytest.raises(TokenizerDataError, match=r"architecture columns differ .* missing \['extra'\]"):
        ff.matrix("architecture", expected=[*names, "extra"])
    with pytest.raises(TokenizerDataError, match="blocks must be a non-empty subset"):
        ff.matrix("summary", blocks=("median",))
    with pytest.raises(TokenizerDataError, match="file not found"):
        FeatureFile(tmp_path / "nope.h5")
    meta = ff.metadata()
    assert meta["diverged"].dtype == bool and meta["operator_index"].tolist() == list(range(16))
    assert set(meta["policies"]) <= {"residual", "convex"}


def test_files_from_a_newer_layout_are_refused_by_name(dataset, tmp_path):
    """Every reader (tokenizer, inspect, stage checks) refuses a file written with a newer layout
    instead of misreading it; an older layout is named too."""
    import shutil

    from spinlock_core.config.experiment import ExperimentConfig
    from spinlock_core.storage.dataset import describe
    from spinlock_core.storage.layout import LAYOUT_VERSION, layout_version_problem
    from spinlock_core.storage.shards import StorageError, check_stage_file

    major, minor = (int(p) for p in LAYOUT_VERSION.split("."))
    newer = f"{major + 1}.0"
    assert layout_version_problem(LAYOUT_VERSION) is None
    assert "newer than this code reads" in layout_version_problem(newer)
    assert "no layout_version" in layout_version_problem(None)
    assert "unreadable" in layout_version_problem("one")
    assert "older layout 0.9" in layout_version_problem("0.9")
    p = tmp_path / "future.h5"
    shutil.copyfile(dataset, p)
    with h5py.File(p, "a") as f:
        f.attrs["layout_version"] = newer
        cfg = ExperimentConfig.model_validate(__import__("json").loads(f.attrs["config"]))
    msg = f"written with layout {newer}, newer than this code reads \\({LAYOUT_VERSION}\\): upgrade spinlock to read it"
    with pytest.raises(TokenizerDataError, match=msg):
        FeatureFile(p)
    with pytest.raises(StorageError, match=msg):
        describe(p)
    assert check_stage_file(p, "rollouts", cfg) == [msg.replace("\\", "")]
