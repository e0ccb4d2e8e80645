"""End to end through real command lines: ``spinlock`` and ``dagster asset materialize``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _run(args, env=None, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600, **kw)


def test_spinlock_validate_ok_and_errors(write_config, tmp_path):
    good = [str(p) for p in sorted((ROOT / "configs").rglob("*.yaml"))]
    r = _run([BIN / "spinlock", "validate", *good])
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("OK ")]) == len(good)
    bad1 = write_config("bad1.yaml", sampling__bogus=3)
    bad2 = tmp_path / "bad2.yaml"
    bad2.write_text("sampling: [unclosed\n")
    r = _run([BIN / "spinlock", "validate", good[0], str(bad1), str(bad2), str(tmp_path / "missing.yaml")])
    assert r.returncode == 2
    assert f"{bad1}: sampling.bogus: unknown key" in r.stderr
    assert f"{bad2}: malformed YAML" in r.stderr
    assert "missing.yaml: file not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_spinlock_inspect_rejects_bad_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    for path, msg in [(junk, "not an HDF5 file"), (foreign, "not a Spinlock file"), (tmp_path / "none.h5", "file not found")]:
        r = _run([BIN / "spinlock", "inspect", str(path)])
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_dagster_cli_materializes_a_partition(write_config, tmp_path):
    """The real `dagster asset materialize` CLI into a sqlite instance under a DAGSTER_HOME we set up."""
    import dagster as dg

    cfg = write_config()
    home = tmp_path / "sl"
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    (dhome / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {"SPINLOCK_CONFIG": str(cfg), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome), "DAGSTER_DISABLE_TELEMETRY": "1"}
    base = [BIN / "dagster", "asset", "materialize", "-m", "spinlock_assets.definitions"]
    r = _run([*base, "--select", "parameters"], env)
    assert r.returncode == 0 and "RUN_SUCCESS" in r.stderr, r.stderr[-3000:]
    r = _run([*base, "--select", "initial_conditions,rollouts", "--partition", "shard-0001"], env)
    assert r.returncode == 0 and "RUN_SUCCESS" in r.stderr, r.stderr[-3000:]
    assert "Asset check 'ic_balance' on 'initial_conditions' passed" in r.stderr
    assert "did not pass" not in r.stderr
    assert (home / "data/tiny/shards/rollouts/shard-0001.h5").exists()
    assert not (home / "data/tiny/shards/rollouts/shard-0000.h5").exists()
    with dg.DagsterInstance.from_config(str(dhome)) as inst:
        ev = inst.get_latest_materialization_event(dg.AssetKey("rollouts"))
        assert ev is not None and ev.dagster_event.partition == "shard-0001"
    r = _run([*base, "--select", "key:features/*", "--partition", "shard-0001"], env)
    assert r.returncode == 0 and "RUN_SUCCESS" in r.stderr, r.stderr[-3000:]
    for fam in ("summary", "temporal", "architecture"):
        assert f"Asset check 'nan_inf' on 'features/{fam}' passed" in r.stderr
        assert (home / f"data/tiny/shards/features_{fam}/shard-0001.h5").exists()
    r = _run([*base, "--select", "group:features", "--partition", "shard-0002"], env)
    assert r.returncode != 0  # shard-0002 has no initial conditions yet: a clear failure, no partial files
    assert not (home / "data/tiny/shards/features_summary/shard-0002.h5").exists()
    assert not list((home / "data/tiny/shards").rglob("*.tmp-*"))
    r = _run([*base, "--select", "rollouts", "--partition", "shard-0099"], env)
    assert r.returncode != 0


@pytest.mark.slow
def test_materialize_runner_builds_the_whole_experiment(write_config, tmp_path):
    """What `make demo` runs: every asset and partition through the Dagster CLI, then the dataset path."""
    cfg = write_config(sampling__total_samples=16, sampling__validation__max_correlation=1.0)  # two partitions
    home = tmp_path / "sl"
    env = {"SPINLOCK_CONFIG": str(cfg), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    r = _run([sys.executable, "-m", "spinlock_assets.materialize"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    dataset = home / "data/datasets/tiny.h5"
    assert f"dataset: {dataset}" in r.stdout
    assert "did not pass" not in r.stderr
    with h5py.File(dataset, "r") as f:
        assert f["features/summary/aggregated/features"].shape == (16, 360)
        assert f["metadata/ic_types"].shape == (16,)
    assert (home / "dagster/dagster.yaml").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: [")
    r = _run([sys.executable, "-m", "spinlock_assets.materialize"], {**env, "SPINLOCK_CONFIG": str(bad)})
    assert r.returncode == 2 and "malformed YAML" in r.stderr and "Traceback" not in r.stderr
