"""Issue #9 (fault tolerance), library level: byte-deterministic files, SHA-256 digests and
fletcher32 that catch corruption, consolidation that refuses a corrupt shard and never leaves a
partial file, and stale temporary files of dead writers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spinlock_core.generation import write_feature_family, write_initial_conditions, write_parameters
from spinlock_core.storage import shards
from spinlock_core.storage.dataset import consolidate, shard_problems
from spinlock_core.storage.integrity import array_digest, verify_dataset_file, verify_stage_file
from spinlock_core.storage.layout import LAYOUT_VERSION, PATHS
from spinlock_core.storage.paths import ExperimentPaths
from spinlock_core.storage.shards import StorageError, check_stage_file, read_stage_file

STAGES = ["initial_conditions", "features_architecture"]  # no rollouts: seconds, not minutes


def _build(cfg, home: Path) -> ExperimentPaths:
    """Parameters, every IC shard and every ARCHITECTURE shard of the tiny config under ``home``."""
    paths = ExperimentPaths.for_config(cfg, home)
    write_parameters(cfg, paths)
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        write_feature_family(cfg, paths, s, "architecture")
    return paths


def _flip(path: Path, offset: int, n: int = 4) -> None:
    """Invert ``n`` bytes of ``path`` at ``offset`` in place."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        raw = fh.read(n)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in raw))


def _chunk_offset(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        return f[name].id.get_chunk_info(0).byte_offset


def _contiguous_offset(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        assert f[name].chunks is None
        return f[name].id.get_offset()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_array_digest_is_sha256_of_dtype_shape_and_bytes():
    a = np.arange(6, dtype="<i8").reshape(2, 3)
    assert array_digest(a) == hashlib.sha256(b"<i8|2,3|" + a.tobytes()).hexdigest()
    # same bytes, other shape or dtype: another digest
    assert array_digest(a.reshape(3, 2)) != array_digest(a)
    assert array_digest(a.view("<u8")) != array_digest(a)
    # a Fortran-ordered copy has the same logical content
    assert array_digest(np.asfortranarray(a)) == array_digest(a)


def test_stage_files_are_byte_identical_when_rewritten(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path / "a")
    files = [paths.parameters, paths.shard("initial_conditions", 1), paths.shard("features_architecture", 2)]
    before = {p: p.read_bytes() for p in files}
    _build(cfg, tmp_path / "a")  # the same paths again, same process
    other = _build(cfg, tmp_path / "b")  # another folder
    for p in files:
        assert p.read_bytes() == before[p], p
        assert (other.root / p.relative_to(paths.root)).read_bytes() == before[p], p
    p = paths.shard("initial_conditions", 1)
    with h5py.File(p, "r") as f:
        assert "created" not in f.attrs
        assert f.attrs["layout_version"] == LAYOUT_VERSION == "1.1"
        digests = json.loads(f.attrs["sha256"])
        assert sorted(digests) == [PATHS.INPUT_FIELDS, PATHS.IC_TYPES, PATHS.OPERATOR_INDEX]
        assert digests[PATHS.OPERATOR_INDEX] == array_digest(np.arange(8, 16, dtype=np.int64))
        assert digests[PATHS.INPUT_FIELDS] == array_digest(f[PATHS.INPUT_FIELDS][()])
        assert f[PATHS.INPUT_FIELDS].fletcher32 and f[PATHS.INPUT_FIELDS].compression == "gzip"
        assert not f[PATHS.OPERATOR_INDEX].fletcher32  # small contiguous metadata: the digest guards it
    assert verify_stage_file(p, "initial_conditions", cfg, start=8, stop=16) == []
    assert verify_stage_file(paths.parameters, "parameters", cfg) == []
    assert not list(paths.root.rglob("*.tmp-*"))


def test_flipped_bytes_in_a_compressed_chunk_fail_the_read(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    p = paths.shard("initial_conditions", 0)
    _flip(p, _chunk_offset(p, PATHS.INPUT_FIELDS) + 100)
    # attributes, shapes and dtypes are intact: the cheap check cannot see it
    assert check_stage_file(p, "initial_conditions", cfg, start=0, stop=8) == []
    problems = verify_stage_file(p, "initial_conditions", cfg, start=0, stop=8)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{PATHS.INPUT_FIELDS}: cannot be read, corrupt data (")
    assert problems[0].endswith("); re-materialize it")
    with pytest.raises(StorageError, match=rf"^{p}: {PATHS.INPUT_FIELDS} cannot be read, corrupt data"):
        read_stage_file(p, "initial_conditions", cfg)


def test_flipped_bytes_in_contiguous_data_fail_the_digest(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    p = paths.shard("initial_conditions", 2)
    _flip(p, _contiguous_offset(p, PATHS.OPERATOR_INDEX))
    with h5py.File(p, "r") as f:  # HDF5 reads it without complaint, wrong numbers
        assert f[PATHS.OPERATOR_INDEX][0] != 16
    problems = verify_stage_file(p, "initial_conditions", cfg, start=16, stop=24)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{PATHS.OPERATOR_INDEX}: content does not match its SHA-256 digest (stored ")
    with pytest.raises(StorageError, match=rf"^{p}: {PATHS.OPERATOR_INDEX} does not match its SHA-256 digest"):
        read_stage_file(p, "initial_conditions", cfg)


def test_value_changed_through_hdf5_is_caught_by_the_digest(tiny_config, tmp_path):
    """An edit through h5py rewrites the chunk with a valid fletcher32: only the digest sees it."""
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    p = paths.shard("initial_conditions", 1)
    with h5py.File(p, "r+") as f:
        f[PATHS.INPUT_FIELDS][3, 0, 5, 5] = f[PATHS.INPUT_FIELDS][3, 0, 5, 5] + 1.0
    with h5py.File(p, "r") as f:
        f[PATHS.INPUT_FIELDS][()]  # reads fine
    assert check_stage_file(p, "initial_conditions", cfg, start=8, stop=16) == []
    problems = verify_stage_file(p, "initial_conditions", cfg, start=8, stop=16)
    assert len(problems) == 1 and problems[0].startswith(f"{PATHS.INPUT_FIELDS}: content does not match its SHA-256 digest")


def test_truncated_missing_digest_and_older_layout(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    p = paths.shard("initial_conditions", 0)
    cut = tmp_path / "cut.h5"
    shutil.copy(p, cut)
    os.truncate(cut, cut.stat().st_size - 100)
    assert verify_stage_file(cut, "initial_conditions", cfg) == ["truncated or damaged HDF5 file"]
    with pytest.raises(StorageError, match=rf"^{cut}: truncated or damaged HDF5 file$"):
        read_stage_file(cut, "initial_conditions", cfg)

    nodigest = tmp_path / "nodigest.h5"
    shutil.copy(p, nodigest)
    with h5py.File(nodigest, "r+") as f:
        del f.attrs["sha256"]
    assert verify_stage_file(nodigest, "initial_conditions", cfg) == [
        "no valid 'sha256' digest attribute: written without integrity digests or damaged; re-materialize it"
    ]
    partial = tmp_path / "partial.h5"
    shutil.copy(p, partial)
    with h5py.File(partial, "r+") as f:
        d = json.loads(f.attrs["sha256"])
        del d[PATHS.IC_TYPES]
        f.attrs["sha256"] = json.dumps(d)
    assert verify_stage_file(partial, "initial_conditions", cfg) == [
        f"{PATHS.IC_TYPES}: no SHA-256 digest recorded for this dataset; re-materialize it"
    ]
    old = tmp_path / "old.h5"
    shutil.copy(p, old)
    with h5py.File(old, "r+") as f:
        f.attrs["layout_version"] = "1.0"
    assert verify_stage_file(old, "initial_conditions", cfg) == [
        "written with the older layout 1.0 (this code writes 1.1): re-materialize it"
    ]


def test_consolidation_refuses_a_corrupt_shard_and_leaves_no_file(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    good = paths.shard("initial_conditions", 1).read_bytes()
    p = paths.shard("initial_conditions", 1)
    _flip(p, _contiguous_offset(p, PATHS.OPERATOR_INDEX))

    problems = shard_problems(cfg, paths, STAGES)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"shard-0001 of initial_conditions ({p}): {PATHS.OPERATOR_INDEX}: content does not match")
    assert shard_problems(cfg, paths, STAGES, verify_data=False) == []  # attributes alone look fine
    with pytest.raises(StorageError) as e:
        consolidate(cfg, paths, STAGES)
    assert str(e.value) == (f"cannot consolidate {paths.dataset}: {p}: {PATHS.OPERATOR_INDEX} does not match its "
                            "SHA-256 digest (corrupt data); re-materialize it")
    assert not paths.dataset.exists()
    assert list(paths.dataset.parent.iterdir()) == []  # no temporary file either

    # a damaged compressed chunk: refused too, and an existing dataset file stays as it was
    p.write_bytes(good)
    res = consolidate(cfg, paths, STAGES)
    assert res.write.path == paths.dataset and not res.quarantined
    assert verify_dataset_file(paths.dataset) == []
    first = paths.dataset.read_bytes()
    q = paths.shard("features_architecture", 2)
    _flip(q, _chunk_offset(q, PATHS.ARCHITECTURE) + 20)
    with pytest.raises(StorageError, match=rf"^cannot consolidate {paths.dataset}: {q}: {PATHS.ARCHITECTURE} cannot be read, "
                       r"corrupt data \(.*\); re-materialize it$"):
        consolidate(cfg, paths, STAGES)
    assert paths.dataset.read_bytes() == first
    assert sorted(x.name for x in paths.dataset.parent.iterdir()) == [paths.dataset.name]

    # regenerated: the same bytes as before, and the same consolidated bytes
    write_feature_family(cfg, paths, 2, "architecture")
    consolidate(cfg, paths, STAGES)
    assert paths.dataset.read_bytes() == first
    with h5py.File(paths.dataset, "r") as f:
        assert "created" not in f.attrs
        digests = json.loads(f.attrs["sha256"])
        assert sorted(digests) == sorted([PATHS.PARAMS, PATHS.INPUT_FIELDS, PATHS.IC_TYPES, PATHS.OPERATOR_INDEX,
                                          PATHS.ARCHITECTURE])
        assert digests[PATHS.OPERATOR_INDEX] == array_digest(np.arange(24, dtype=np.int64))
        assert f[PATHS.INPUT_FIELDS].fletcher32


def test_verify_dataset_file_catches_corruption(tiny_config, tmp_path):
    cfg = tiny_config
    paths = _build(cfg, tmp_path)
    consolidate(cfg, paths, STAGES)
    d = paths.dataset
    assert verify_dataset_file(d) == []
    _flip(d, _contiguous_offset(d, PATHS.OPERATOR_INDEX) + 8)
    problems = verify_dataset_file(d)
    assert len(problems) == 1 and problems[0].startswith(f"{PATHS.OPERATOR_INDEX}: content does not match its SHA-256 digest")
    assert verify_dataset_file(paths.shard("initial_conditions", 0)) == [
        "stage attribute 'initial_conditions' != 'dataset': not a consolidated dataset file"
    ]


def test_stale_temp_files_of_dead_writers_are_removed_on_the_next_write(tiny_config, tmp_path):
    cfg = tiny_config
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    target = paths.shard("initial_conditions", 0)
    target.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free
    host = shards._HOST
    stale = target.with_name(f"{target.name}.tmp-{host}-{dead.pid}")
    legacy = target.with_name(f"{target.name}.tmp-{dead.pid}")  # older naming, judged as this host's
    remote = target.with_name(f"{target.name}.tmp-otherhost-{dead.pid}")  # another host: its pid means nothing here
    live = target.with_name(f"{target.name}.tmp-{host}-{os.getppid()}")
    unrelated = target.with_name("shard-0001.h5.tmp-" + f"{host}-{dead.pid}")
    for f in (stale, legacy, remote, live, unrelated):
        f.write_bytes(b"partial")
    # readers never look at temporary files
    assert any("shard-0000 of initial_conditions: missing" in x for x in shard_problems(cfg, paths, ["initial_conditions"]))
    write_initial_conditions(cfg, paths, 0)
    left = sorted(x.name for x in target.parent.iterdir())
    assert left == sorted([target.name, remote.name, live.name, unrelated.name])
    assert verify_stage_file(target, "initial_conditions", cfg, start=0, stop=8) == []
