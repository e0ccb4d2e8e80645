"""The generation stages end to end in the library: ICs, rollouts, storage, shard-size independence."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from spinlock_core.config import load_experiment
from spinlock_core.generation import (
    ic_types_for,
    initial_conditions_for,
    operator_specs,
    sample_parameters,
    simulate_operators,
    write_initial_conditions,
    write_parameters,
    write_rollouts,
)
from spinlock_core.operators import build_operator
from spinlock_core.storage.dataset import consolidate, describe
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.paths import ExperimentPaths
from spinlock_core.storage.shards import StorageError, check_stage_file, write_stage_file


def _build_dataset(cfg, home):
    paths = ExperimentPaths.for_config(cfg, home)
    write_parameters(cfg, paths)
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        write_rollouts(cfg, paths, s)
    consolidate(cfg, paths, ["initial_conditions", "rollouts"])
    return paths


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_shard_size_independence(write_config, tmp_path):
    """Shard size 4 vs 12 (and batch size 3 vs 5): every array byte-identical."""
    a = load_experiment(write_config("a.yaml", dataset__storage__shard_size=4, sampling__batch_size=3,
                                     dataset__storage__store_trajectories=True))
    b = load_experiment(write_config("b.yaml", dataset__storage__shard_size=12, sampling__batch_size=5,
                                     dataset__storage__store_trajectories=True))
    assert a.num_shards == 6 and b.num_shards == 2
    pa, pb = _build_dataset(a, tmp_path / "a"), _build_dataset(b, tmp_path / "b")
    xa, xb = _arrays(pa.dataset), _arrays(pb.dataset)
    assert set(xa) == set(xb) and PATHS.OUTPUT_FIELDS in xa
    for k in xa:
        assert xa[k].tobytes() == xb[k].tobytes(), k
    assert xa[PATHS.OUTPUT_FIELDS].shape == (24, 2, 6, 3, 16, 16)


def test_trajectories_match_a_rebuilt_operator(tiny_config):
    """An operator rebuilt from the stored unit values and its index reproduces its rollout."""
    from spinlock_core.rollout import rollout

    unit, _ = sample_parameters(tiny_config)
    idx = np.arange(8, 12)
    ics = initial_conditions_for(tiny_config, idx, ic_types_for(tiny_config, idx))
    sim = simulate_operators(tiny_config, idx, unit[idx], ics, keep_trajectories=True)
    spec = operator_specs(tiny_config, unit[10:11])[0]
    op = build_operator(spec, root_seed=tiny_config.root_seed, index=10, num_steps=5)
    r = rollout(op, torch.from_numpy(ics[2]), realizations=2, num_timesteps=6, root_seed=tiny_config.root_seed, index=10,
                divergence_threshold=tiny_config.simulation.divergence_threshold)
    np.testing.assert_array_equal(r.trajectory.numpy(), sim.trajectories[2])


def test_consumers_see_every_batch_and_trajectories_are_not_kept(tiny_config):
    unit, _ = sample_parameters(tiny_config)
    idx = np.arange(10)
    ics = initial_conditions_for(tiny_config, idx, ic_types_for(tiny_config, idx))
    seen = []
    sim = simulate_operators(tiny_config, idx, unit[idx], ics,
                             consumers=[lambda i, t, ops, specs: seen.append((i.tolist(), tuple(t.shape)))])
    assert sim.trajectories is None
    assert [s[0] for s in seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert seen[0][1] == (4, 2, 6, 3, 16, 16)


def test_dataset_layout_and_seed_snippets(tiny_config, tmp_path):
    paths = _build_dataset(tiny_config, tmp_path)
    with h5py.File(paths.dataset, "r") as f:  # the seed's usage snippet, unchanged
        ic_types = f["metadata/ic_types"][:].astype(str)
        evolution_policies = f["metadata/evolution_policies"][:].astype(str)
        inputs = f["inputs/fields"][:]
        assert f["parameters/params"].shape == (24, tiny_config.parameter_space.dim)
        assert f["metadata/grid_sizes"].dtype == np.int32 and (f["metadata/grid_sizes"][:] == 16).all()
        assert set(f["metadata/noise_regimes"][:].astype(str)) <= {"low", "medium", "high"}
        assert f["metadata/diverged"].dtype == bool
        assert f["inputs/fields"].compression == "gzip" and f["inputs/fields"].shuffle
        assert "config" in f.attrs and "sampling_discrepancy" in f.attrs
    structured_idx = np.where(ic_types == "structured")[0]
    assert abs(len(structured_idx) - 6) <= 2  # 25% of 24, within the balanced assignment's bound
    assert set(evolution_policies) == {"residual", "convex"}
    expected = ic_types_for(tiny_config, np.arange(24))
    assert (ic_types == expected.astype(str)).all()
    ref = initial_conditions_for(tiny_config, structured_idx, expected[structured_idx])
    np.testing.assert_array_equal(inputs[structured_idx], ref)
    info = describe(paths.dataset)
    assert {d["path"] for d in info["datasets"]} >= {"inputs/fields", "parameters/params", "metadata/ic_types"}
    # every file records the noise generator and its stage fingerprint
    from spinlock_core.rng import GENERATOR
    from spinlock_core.storage.fingerprints import stage_fingerprint

    files = [paths.dataset, *sorted(paths.root.rglob("*.h5"))]
    assert len(files) == 1 + 1 + 2 * tiny_config.num_shards
    for p in files:
        with h5py.File(p, "r") as f:
            assert f.attrs["noise_generator"] == GENERATOR == "philox4x32-10+box-muller-exact/1", p
            stage = f.attrs["stage"]
            if stage != "dataset":
                assert f.attrs["stage_fingerprint"] == stage_fingerprint(tiny_config, stage), p


@pytest.mark.parametrize("compression", ["lzf", "none"])
def test_other_compressions(write_config, tmp_path, compression):
    cfg = load_experiment(write_config(dataset__storage__compression=compression))
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    write_parameters(cfg, paths)
    write_initial_conditions(cfg, paths, 0)
    with h5py.File(paths.shard("initial_conditions", 0), "r") as f:
        assert f["inputs/fields"].compression == (None if compression == "none" else "lzf")


def test_atomic_write_leaves_nothing_on_failure(tiny_config, tmp_path, monkeypatch):
    out = tmp_path / "s" / "x.h5"
    with pytest.raises(StorageError, match="must have shape"):  # rejected before any file is opened
        write_stage_file(out, "parameters", tiny_config, {PATHS.PARAMS: np.zeros((3, 2), np.float32)})
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # a failure in the middle of the write (an invalid filter) leaves no temporary file behind
    import spinlock_core.storage.shards as shards

    monkeypatch.setattr(shards, "compression_kwargs", lambda cfg: {"compression": "gzip", "compression_opts": 99})
    with pytest.raises(ValueError):
        write_stage_file(out, "parameters", tiny_config, {PATHS.PARAMS: np.zeros((3, tiny_config.parameter_space.dim), np.float32)})
    assert list(out.parent.iterdir()) == []


def test_existing_file_survives_failed_rewrite(tiny_config, tmp_path):
    paths = ExperimentPaths.for_config(tiny_config, tmp_path)
    write_parameters(tiny_config, paths)
    before = paths.parameters.read_bytes()
    with pytest.raises(StorageError):
        write_stage_file(paths.parameters, "parameters", tiny_config, {PATHS.PARAMS: np.zeros((3, 2), np.float32)})
    assert paths.parameters.read_bytes() == before
    assert [p.name for p in paths.parameters.parent.iterdir()] == ["parameters.h5"]


def test_unwritable_output_folder(tiny_config, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if (ro / "probe").exists() or __import__("os").access(ro, __import__("os").W_OK):
            pytest.skip("running as a user that can write anywhere")
        paths = ExperimentPaths.for_config(tiny_config, ro)
        with pytest.raises(StorageError, match="cannot create output folder|not writable"):
            write_parameters(tiny_config, paths)
    finally:
        ro.chmod(0o700)


def test_unwritable_output_file_location(tiny_config, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    paths = ExperimentPaths.for_config(tiny_config, blocker)
    with pytest.raises(StorageError, match=r"blocker/data/tiny: cannot create output folder"):
        write_parameters(tiny_config, paths)


def test_layout_check_catches_stale_and_foreign_files(tiny_config, write_config, tmp_path):
    paths = ExperimentPaths.for_config(tiny_config, tmp_path)
    write_parameters(tiny_config, paths)
    write_initial_conditions(tiny_config, paths, 1)
    p = paths.shard("initial_conditions", 1)
    assert check_stage_file(p, "initial_conditions", tiny_config, start=8, stop=16) == []
    assert any("expected [0, 8)" in x for x in check_stage_file(p, "initial_conditions", tiny_config, start=0, stop=8))
    # a config section the ICs read makes the shard stale; one they do not read leaves it current
    other = load_experiment(write_config("o.yaml", simulation__input_generation__gaussian_random_field__variance=2.0))
    assert any("different config" in x for x in check_stage_file(p, "initial_conditions", other, start=8, stop=16))
    later = load_experiment(write_config("t.yaml", simulation__num_timesteps=7))
    assert check_stage_file(p, "initial_conditions", later, start=8, stop=16) == []
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    assert check_stage_file(junk, "initial_conditions", tiny_config) == ["not an HDF5 file"]
    with pytest.raises(StorageError, match="cannot consolidate"):
        consolidate(tiny_config, paths, ["initial_conditions"])
    assert not paths.dataset.exists()
