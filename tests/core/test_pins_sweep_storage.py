"""Storage and generation helpers pinned function by function: the exact config values each stage's
fingerprint reads (``stage_inputs`` key sets, ``code_version`` and ``stage_fingerprint`` recomputed
with hashlib/json here), the attributes, digests, chunking and messages of the shard writer and
reader (``write_stage_file``, ``check_stage_arrays``, ``check_stage_file``, ``read_stage_file``,
``open_h5``, ``quarantine_reason``, temporary files), the integrity helpers (``Digest``,
``dataset_digest``, ``read_digests``, ``verify_*``), operator grouping and the simulation entry
points' argument checks. Expected values are written by hand or recomputed with numpy/hashlib."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import spinlock_core
from spinlock_core.rng import GENERATOR
from spinlock_core.storage import fingerprints as fp
from spinlock_core.storage import shards
from spinlock_core.storage.layout import LAYOUT_VERSION, PATHS, encode_strings
from spinlock_core.storage.shards import StorageError

LOG = "spinlock_core.storage.shards"


def _sha16(obj) -> str:
    """The fingerprint digest re-implemented: SHA-256 of compact, key-sorted JSON, 16 hex digits."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _sim_expected(cfg) -> dict:
    """What the rollout-reading stages read from ``simulation`` (device, batching and input
    generation left out), written key by key."""
    s = cfg.simulation
    return {
        "simulation": {"alpha": s.alpha, "divergence_threshold": s.divergence_threshold, "dt": s.dt,
                       "grid_size": s.grid_size, "noise_period": s.noise_period, "num_channels": s.num_channels,
                       "num_realizations": s.num_realizations, "num_timesteps": s.num_timesteps,
                       "precision": s.precision},
        "grid_size": 16, "root_seed": 7, "noise_generator": GENERATOR,
    }


def _expected_inputs(cfg) -> dict[str, dict]:
    part = {"shard_size": 8, "total_samples": 24}
    ps = cfg.parameter_space.model_dump(mode="json")
    return {
        "parameters": {"parameter_space": ps, "sobol": {"scramble": True, "seed": 7, "scramble_method": "lms"},
                       "total_samples": 24},
        "initial_conditions": {"input_generation": cfg.simulation.input_generation.model_dump(mode="json"),
                               "num_channels": 3, "grid_size": 16, "root_seed": 7, **part},
        "rollouts": {**_sim_expected(cfg), "store_trajectories": False, **part},
        "features_summary": {"family": {"enabled": True, "extract_operator_features": False}, **_sim_expected(cfg), **part},
        "features_temporal": {"family": {"enabled": True}, **_sim_expected(cfg), **part},
        "features_architecture": {"family": {"enabled": True}, "parameter_space": ps, **part},
        "features_initial": {"family": {"enabled": False}, **part},
        "dataset": {"output_path": "datasets/tiny.h5", "compression": "gzip", "compression_level": 4, "chunk_size": 4},
    }


VERSIONS = {"parameters": "1", "initial_conditions": "1", "rollouts": "2", "features_summary": "1.1",
            "features_temporal": "1.1", "features_architecture": "1.0", "features_initial": "1.1", "dataset": "1.1"}


# --------------------------------------------------------------------------------- fingerprints


def test_stage_inputs_every_key_and_value_per_stage(tiny_config):
    """Each stage reads exactly the config values listed here (the tiny config's values)."""
    cfg = tiny_config
    for stage, want in _expected_inputs(cfg).items():
        got = fp.stage_inputs(cfg, stage)
        assert sorted(got) == sorted(want), stage
        assert got == want, stage
    assert "device" not in fp.stage_inputs(cfg, "rollouts")["simulation"]
    with pytest.raises(ValueError, match=r"^unknown stage 'bogus'$"):
        fp.stage_inputs(cfg, "bogus")


def test_code_version_and_stage_fingerprint_recomputed(tiny_config):
    """``code_version`` is ``<version>-<16 hex of {stage, inputs}>``; the fingerprint hashes the
    code versions of the stage's upstream closure, keyed by stage."""
    cfg = tiny_config
    inputs = _expected_inputs(cfg)
    cv = {s: f"{VERSIONS[s]}-{_sha16({'stage': s, 'inputs': inputs[s]})}" for s in inputs}
    for s in inputs:
        assert fp.stage_version(s) == VERSIONS[s], s
        assert fp.code_version(cfg, s) == cv[s], s
    closures = {"parameters": ["parameters"], "initial_conditions": ["initial_conditions"],
                "rollouts": ["initial_conditions", "parameters", "rollouts"],
                "features_summary": ["features_summary", "initial_conditions", "parameters"],
                "features_temporal": ["features_temporal", "initial_conditions", "parameters"],
                "features_architecture": ["features_architecture", "parameters"],
                "features_initial": ["features_initial", "initial_conditions"], "dataset": ["dataset"]}
    for s, closure in closures.items():
        assert fp.stage_fingerprint(cfg, s) == _sha16({c: cv[c] for c in closure}), s
    # the lineage override pulls in the upstream of the stages it names
    got = fp.stage_fingerprint(cfg, "dataset", upstream=("rollouts", "features_initial"))
    want = {c: cv[c] for c in ["dataset", "features_initial", "initial_conditions", "parameters", "rollouts"]}
    assert got == _sha16(want)
    # the stage's own upstream is always followed
    got = fp.stage_fingerprint(cfg, "features_initial", upstream=("parameters",))
    assert got == _sha16({c: cv[c] for c in ["features_initial", "initial_conditions", "parameters"]})


def test_fingerprint_changes_only_with_what_the_stage_reads(write_config):
    """An input-generation value changes only the IC code version; ``features.initial.enabled``
    only ``features_initial``'s."""
    from spinlock_core.config import load_experiment

    a = load_experiment(write_config("a.yaml"))
    b = load_experiment(write_config("b.yaml", simulation__input_generation__localized__num_blobs=4))
    c = load_experiment(write_config("c.yaml", features__initial__enabled=True))
    assert [s for s in VERSIONS if fp.code_version(a, s) != fp.code_version(b, s)] == ["initial_conditions"]
    assert fp.stage_inputs(b, "initial_conditions")["input_generation"]["localized"]["num_blobs"] == 4
    changed = [s for s in VERSIONS if fp.code_version(a, s) != fp.code_version(c, s)]
    assert changed == ["features_initial"]


def test_stage_version_errors_and_noise_generator_fallback(monkeypatch):
    """Unknown stages are named (with the known ones); without the rng package the generator is
    ``"unknown"``."""
    with pytest.raises(ValueError, match=r"^unknown feature stage 'features_bogus'$"):
        fp.stage_version("features_bogus")
    known = sorted(["parameters", "initial_conditions", "rollouts", "parameters", "initial_conditions", "rollouts",
                    "features_summary", "features_temporal", "features_architecture", "features_initial", "dataset"])
    with pytest.raises(ValueError) as e:
        fp.stage_version("bogus")
    assert str(e.value) == f"unknown stage 'bogus'; known: {known}"
    assert fp.noise_generator_name() == GENERATOR
    monkeypatch.setitem(sys.modules, "spinlock_core.rng", None)
    assert fp.noise_generator_name() == "unknown"


# ------------------------------------------------------------------------ shards: folders, temp


def test_config_fingerprint_is_16_hex_of_the_config_without_orchestration(tiny_config):
    """SHA-256 of the config JSON minus ``orchestration``, first 16 hex digits."""
    cfg = tiny_config
    want = hashlib.sha256(cfg.model_dump_json(exclude={"orchestration"}).encode()).hexdigest()[:16]
    assert shards.config_fingerprint(cfg) == want and len(want) == 16
    assert want != hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]


def test_ensure_writable_dir_creates_parents_and_reports_failures(tmp_path, monkeypatch):
    """Nested folders are created (twice is fine); a file in the way and an unwritable folder are
    StorageErrors naming the folder."""
    deep = tmp_path / "a" / "b" / "c"
    shards._ensure_writable_dir(deep)
    shards._ensure_writable_dir(deep)
    assert deep.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as e:
        shards._ensure_writable_dir(blocker)
    assert str(e.value) == f"{blocker}: cannot create output folder (File exists)"
    seen = []

    def fake_access(path, mode):
        seen.append((path, mode))
        return False

    monkeypatch.setattr(shards.os, "access", fake_access)
    with pytest.raises(StorageError) as e:
        shards._ensure_writable_dir(deep)
    assert str(e.value) == f"{deep}: output folder is not writable"
    assert seen == [(deep, os.W_OK)]


def test_temp_file_name_and_pid_liveness(tmp_path):
    """The writer's temporary file is ``<name>.tmp-<host>-<pid>``; a live child is alive and is
    not signalled by the probe; a reaped child is dead."""
    target = tmp_path / "x.h5"
    with shards.atomic_h5(target) as f:
        assert Path(f.filename).name == f"x.h5.tmp-{shards._HOST}-{os.getpid()}"
        assert not target.exists()
    assert target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]
    assert shards._pid_alive(os.getpid()) is True
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert shards._pid_alive(child.pid) is True
        time.sleep(0.2)
        assert child.poll() is None  # probing sends signal 0 only
    finally:
        child.kill()
        child.wait()
    assert shards._pid_alive(child.pid) is False


def test_pid_alive_permission_error_means_alive(monkeypatch):
    """A pid owned by another user (PermissionError on signal 0) is alive; a missing one is not."""
    sent = []

    def kill(pid, sig, exc):
        sent.append((pid, sig))
        raise exc

    monkeypatch.setattr(shards.os, "kill", lambda pid, sig: kill(pid, sig, PermissionError()))
    assert shards._pid_alive(424242) is True
    monkeypatch.setattr(shards.os, "kill", lambda pid, sig: kill(pid, sig, ProcessLookupError()))
    assert shards._pid_alive(434343) is False
    assert sent == [(424242, 0), (434343, 0)]


def test_remove_stale_temp_files_returns_removed_logs_and_skips(tmp_path, caplog):
    """Every stale file of a dead writer is removed and logged; live and foreign ones are kept,
    an unremovable one is logged and skipped; a missing folder gives []."""
    assert shards.remove_stale_temp_files(tmp_path / "nope" / "x.h5") == []
    target = tmp_path / "x.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = shards._HOST
    keep = [target.with_name(f"x.h5.tmp-{host}-{os.getpid()}"), target.with_name(f"x.h5.tmp-other-{dead.pid}"),
            target.with_name("x.h5.tmp-junk")]
    for i in range(6):
        keep.append(target.with_name(f"x.h5.tmp-other{i}-{dead.pid}"))
    stale = [target.with_name(f"x.h5.tmp-{host}-{dead.pid}"), target.with_name(f"x.h5.tmp-{dead.pid}")]
    for p in keep + stale:
        p.write_bytes(b"partial")
    stuck = target.with_name(f"x.h5.tmp-{host}-{dead.pid}0")  # a folder: unlink fails
    other_dead = subprocess.Popen([sys.executable, "-c", "pass"])
    other_dead.wait()
    stuck = target.with_name(f"x.h5.tmp-{host}-{other_dead.pid}")
    stuck.mkdir()
    with caplog.at_level(logging.WARNING, logger=LOG):
        removed = shards.remove_stale_temp_files(str(target))
    assert sorted(removed) == sorted(stale)
    assert all(isinstance(p, Path) for p in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep + [stuck])
    msgs = sorted(caplog.messages)
    want = sorted([f"{p}: removed a stale temporary file left by writer pid {dead.pid} (no longer running)" for p in stale]
                  + [f"{stuck}: cannot remove stale temporary file of a dead writer (Is a directory)"])
    assert msgs == want


def test_remove_stale_temp_files_goes_on_after_a_failed_unlink(tmp_path, monkeypatch, caplog):
    """A stale file that vanished (FileNotFoundError) or cannot be removed (OSError) is skipped:
    the next ones are still removed; only the OSError is logged, with its strerror (or the error)."""
    import errno

    target = tmp_path / "x.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [target.with_name(f"x.h5.tmp-{shards._HOST}-{dead.pid}"), target.with_name(f"x.h5.tmp-{dead.pid}"),
             target.with_name(f"x.h5.tmp-{shards._HOST}-{dead.pid}0000")]
    real = Path.unlink
    for exc in (FileNotFoundError(), OSError(errno.EACCES, "Permission denied"), OSError("plain")):
        for p in stale:
            p.write_bytes(b"partial")
        failed = []

        def unlink(self, *a, exc=exc, **k):
            if not failed:
                failed.append(self)
                raise exc
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "unlink", unlink)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOG):
            removed = shards.remove_stale_temp_files(target)
        monkeypatch.setattr(Path, "unlink", real)
        assert len(failed) == 1 and sorted(removed) == sorted(set(stale) - set(failed)), exc
        gone = [f"{p}: removed a stale temporary file left by writer pid {p.name.rsplit('-', 1)[1]} (no longer running)"
                for p in removed]
        if isinstance(exc, FileNotFoundError):
            assert sorted(caplog.messages) == sorted(gone)
        else:
            why = "Permission denied" if exc.strerror else "plain"
            assert sorted(caplog.messages) == sorted(gone + [f"{failed[0]}: cannot remove stale temporary file of a dead writer ({why})"])
        for p in failed:
            p.unlink(missing_ok=True)


def test_atomic_h5_failure_removes_the_temporary_file(tmp_path):
    """An exception in the block leaves neither the target nor a temporary file."""
    target = tmp_path / "sub" / "y.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with shards.atomic_h5(target) as f:
            f.attrs["a"] = 1
            raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


# ----------------------------------------------------------------- shards: arrays, write, attrs


def _ic_arrays(n: int = 3) -> dict:
    """Initial-condition datasets of ``n`` operators: fields [n, 3, 16, 16], types [n], index [n]."""
    return {PATHS.INPUT_FIELDS: np.arange(n * 3 * 16 * 16, dtype=np.float32).reshape(n, 3, 16, 16) / 7.0,
            PATHS.IC_TYPES: encode_strings(["structured", "localized", "gaussian_random_field", "structured"][:n]),
            PATHS.OPERATOR_INDEX: np.arange(10, 10 + n, dtype=np.int64)}


def test_check_stage_arrays_every_message(tiny_config):
    """Missing/unexpected datasets, N disagreement, the expected N, shapes and dtype kinds (a float
    dataset takes int/uint data, nothing else is converted)."""
    cfg = tiny_config
    ic = _ic_arrays()
    assert shards.check_stage_arrays("initial_conditions", cfg, ic) == []
    assert shards.check_stage_arrays("initial_conditions", cfg, ic, n=3) == []
    need = sorted([PATHS.INPUT_FIELDS, PATHS.IC_TYPES, PATHS.OPERATOR_INDEX])
    missing = {k: v for k, v in ic.items() if k != PATHS.IC_TYPES}
    assert shards.check_stage_arrays("initial_conditions", cfg, missing) == [
        f"stage 'initial_conditions' needs datasets {need}; missing ['{PATHS.IC_TYPES}']"]
    extra = {**ic, "zz/extra": np.zeros(3), "aa/extra": np.zeros(3)}
    assert shards.check_stage_arrays("initial_conditions", cfg, extra) == [
        f"stage 'initial_conditions' needs datasets {need}; unexpected ['aa/extra', 'zz/extra']"]
    both = {**missing, "x": np.zeros(3)}
    assert shards.check_stage_arrays("initial_conditions", cfg, both) == [
        f"stage 'initial_conditions' needs datasets {need}; missing ['{PATHS.IC_TYPES}']; unexpected ['x']"]
    uneven = {**ic, PATHS.OPERATOR_INDEX: np.arange(5, dtype=np.int64)}
    assert shards.check_stage_arrays("initial_conditions", cfg, uneven) == [
        "datasets of stage 'initial_conditions' disagree on N: [3, 5]"]
    assert shards.check_stage_arrays("initial_conditions", cfg, ic, n=4) == ["holds 3 operators, expected 4"]
    bad_shape = {PATHS.INITIAL: np.zeros((2, 41), np.float32)}
    assert shards.check_stage_arrays("features_initial", cfg, bad_shape, n=2) == [
        f"{PATHS.INITIAL} must have shape (2, 42), got (2, 41)"]
    # float layout: int and uint data are accepted; bool, strings and complex are not
    for dt in (np.int16, np.uint8, np.float64):
        assert shards.check_stage_arrays("features_initial", cfg, {PATHS.INITIAL: np.zeros((2, 42), dt)}) == [], dt
    for dt in (np.bool_, np.complex64):
        got = shards.check_stage_arrays("features_initial", cfg, {PATHS.INITIAL: np.zeros((2, 42), dt)})
        assert got == [f"{PATHS.INITIAL} has dtype {np.dtype(dt)}, the layout stores float32"], dt
    # an int layout takes no floats or uints
    for dt, ok in ((np.int32, True), (np.float64, False), (np.uint64, False)):
        arrs = {**ic, PATHS.OPERATOR_INDEX: np.arange(3).astype(dt)}
        got = shards.check_stage_arrays("initial_conditions", cfg, arrs)
        assert got == ([] if ok else [f"{PATHS.OPERATOR_INDEX} has dtype {np.dtype(dt)}, the layout stores int64"]), dt
    # a shape and a dtype problem on one dataset plus a wrong N: all three reported, in order
    arrs = {**ic, PATHS.INPUT_FIELDS: np.zeros((3, 3, 16, 8), dtype=np.bool_)}
    assert shards.check_stage_arrays("initial_conditions", cfg, arrs, n=2) == [
        "holds 3 operators, expected 2",
        f"{PATHS.INPUT_FIELDS} must have shape (3, 3, 16, 16), got (3, 3, 16, 8)",
        f"{PATHS.INPUT_FIELDS} has dtype bool, the layout stores float32"]


def test_write_stage_file_attributes_digests_and_chunking(tiny_config, tmp_path):
    """Every root attribute by name, attrs overriding the base ones, the ``sha256`` text
    (sort_keys JSON of each cast array's digest), gzip+shuffle+fletcher32 chunks of 4 operators on
    compressible datasets and contiguous metadata, values cast to the layout dtype."""
    cfg = tiny_config
    path = tmp_path / "w" / "ic.h5"
    arrays = {**_ic_arrays(3), PATHS.OPERATOR_INDEX: np.array([10, 11, 12], dtype=np.int32)}
    t0 = time.perf_counter()
    stats = shards.write_stage_file(str(path), "initial_conditions", cfg, arrays, attrs={"shard": 1, "experiment": "renamed"},
                                    dataset_attrs={PATHS.IC_TYPES: {"note": "n1"}, "not/a/dataset": {"x": 1}})
    elapsed = time.perf_counter() - t0
    assert stats.path == path and isinstance(stats.path, Path)
    assert stats.bytes == path.stat().st_size
    assert 0 <= stats.seconds <= elapsed
    with h5py.File(path, "r") as f:
        a = dict(f.attrs)
        assert sorted(a) == sorted(["layout_version", "stage", "experiment", "stage_version", "stage_code_version",
                                    "stage_fingerprint", "config_fingerprint", "noise_generator", "code_version",
                                    "shard", "n", "sha256"])
        assert a["layout_version"] == LAYOUT_VERSION == "1.1"
        assert a["stage"] == "initial_conditions" and a["experiment"] == "renamed" and a["shard"] == 1
        assert a["stage_version"] == "1"
        assert a["stage_code_version"] == fp.code_version(cfg, "initial_conditions")
        assert a["stage_fingerprint"] == fp.stage_fingerprint(cfg, "initial_conditions")
        assert a["config_fingerprint"] == shards.config_fingerprint(cfg)
        assert a["noise_generator"] == GENERATOR
        assert a["code_version"] == spinlock_core.__version__
        assert a["n"] == 3
        fields = f[PATHS.INPUT_FIELDS]
        assert fields.chunks == (3, 3, 16, 16) and fields.fletcher32
        assert fields.compression == "gzip" and fields.compression_opts == 4 and fields.shuffle
        idx = f[PATHS.OPERATOR_INDEX]
        assert idx.chunks is None and not idx.fletcher32 and idx.compression is None
        assert idx.dtype == np.int64 and idx[()].tolist() == [10, 11, 12]
        assert f[PATHS.IC_TYPES].chunks is None and dict(f[PATHS.IC_TYPES].attrs) == {"note": "n1"}
        assert dict(fields.attrs) == {}
        assert h5py.h5o.get_info(fields.id).ctime == 0 and h5py.h5o.get_info(idx.id).ctime == 0  # no timestamps
        np.testing.assert_array_equal(fields[()], arrays[PATHS.INPUT_FIELDS])
        digests = {PATHS.INPUT_FIELDS: hashlib.sha256(b"<f4|3,3,16,16|" + arrays[PATHS.INPUT_FIELDS].tobytes()).hexdigest(),
                   PATHS.IC_TYPES: hashlib.sha256(b"|S40|3|" + arrays[PATHS.IC_TYPES].tobytes()).hexdigest(),
                   PATHS.OPERATOR_INDEX: hashlib.sha256(b"<i8|3|" + np.array([10, 11, 12], "<i8").tobytes()).hexdigest()}
        assert a["sha256"] == json.dumps(digests, sort_keys=True)
    # 9 operators: chunks of chunk_size=4 along N
    stats = shards.write_stage_file(path, "features_initial", cfg, {PATHS.INITIAL: np.ones((9, 42))})
    with h5py.File(path, "r") as f:
        assert f[PATHS.INITIAL].chunks == (4, 42) and f[PATHS.INITIAL].dtype == np.float32
        assert f.attrs["stage"] == "features_initial" and f.attrs["experiment"] == "tiny" and "shard" not in f.attrs


def test_write_stage_file_digest_text_has_sorted_keys(tiny_config, tmp_path):
    """The rollouts datasets are written in layout order (policies before diverged) but the
    ``sha256`` attribute lists them sorted."""
    cfg = tiny_config
    arrays = {PATHS.POLICIES: encode_strings(["residual", "convex"]), PATHS.GRID_SIZES: np.array([16, 16], np.int32),
              PATHS.NOISE_REGIMES: encode_strings(["low", "high"]), PATHS.DIVERGED: np.array([False, True]),
              PATHS.VALID_STATES: np.array([6, 3], np.int32)}
    p = tmp_path / "r.h5"
    shards.write_stage_file(p, "rollouts", cfg, arrays)
    with h5py.File(p, "r") as f:
        text = f.attrs["sha256"]
    assert list(json.loads(text)) == sorted(arrays)
    assert text == json.dumps({k: shards.array_digest(np.asarray(v)) for k, v in sorted(arrays.items())})
    back = shards.read_stage_file(p, "rollouts", cfg)
    assert sorted(back) == sorted(arrays)
    assert back[PATHS.VALID_STATES].tolist() == [6, 3] and back[PATHS.DIVERGED].tolist() == [False, True]


def test_write_stage_file_zero_operators_and_refusals(tiny_config, tmp_path):
    """N = 0 writes unchunked empty datasets; non-conforming arrays raise naming the path and
    write nothing."""
    cfg = tiny_config
    path = tmp_path / "empty.h5"
    shards.write_stage_file(path, "features_initial", cfg, {PATHS.INITIAL: np.zeros((0, 42), np.float32)})
    with h5py.File(path, "r") as f:
        assert f[PATHS.INITIAL].shape == (0, 42) and f[PATHS.INITIAL].chunks is None
        assert not f[PATHS.INITIAL].fletcher32 and f.attrs["n"] == 0
    # one operator is already chunked
    shards.write_stage_file(path, "features_initial", cfg, {PATHS.INITIAL: np.zeros((1, 42), np.float32)})
    with h5py.File(path, "r") as f:
        assert f[PATHS.INITIAL].chunks == (1, 42) and f[PATHS.INITIAL].fletcher32
    bad = tmp_path / "bad.h5"
    with pytest.raises(StorageError) as e:
        shards.write_stage_file(bad, "features_initial", cfg, {PATHS.INITIAL: np.zeros((2, 41)), "x": np.zeros(2)})
    assert str(e.value) == (f"{bad}: stage 'features_initial' needs datasets ['{PATHS.INITIAL}']; unexpected ['x']")
    with pytest.raises(StorageError) as e:
        shards.write_stage_file(bad, "features_initial", cfg, {PATHS.INITIAL: np.zeros((2, 41), np.bool_)})
    assert str(e.value) == (f"{bad}: {PATHS.INITIAL} must have shape (2, 42), got (2, 41); "
                            f"{PATHS.INITIAL} has dtype bool, the layout stores float32")
    assert not bad.exists()


# ----------------------------------------------------------------- shards: quarantine, open, read


class _Check:
    def __init__(self, name, blocks, description="d"):
        self.name, self.blocks, self.description = name, blocks, description


def test_quarantine_reason_every_case(tiny_config, tmp_path):
    """None without a file; the recorded checks joined; "quarantined" with none recorded; a
    damaged file says so."""
    cfg = tiny_config
    path, q = tmp_path / "p.h5", tmp_path / "q.h5"
    assert shards.quarantine_reason(q) is None
    res = shards.commit_stage_file(path, q, "features_initial", cfg, {PATHS.INITIAL: np.ones((2, 42))},
                                   [_Check("nan_inf", True, "NaN in 3"), _Check("soft", False), _Check("range", True, "too big")])
    assert res.quarantined and res.failed == ["nan_inf", "range"] and res.write.path == q
    assert shards.quarantine_reason(str(q)) == "nan_inf failed (NaN in 3); range failed (too big)"
    plain = tmp_path / "plain.h5"
    shards.write_stage_file(plain, "features_initial", cfg, {PATHS.INITIAL: np.ones((2, 42))})
    assert shards.quarantine_reason(plain) == "quarantined"
    with h5py.File(plain, "r+") as f:
        f.attrs["quarantined_by"] = json.dumps([{"check": "x"}])
    assert shards.quarantine_reason(plain) == "quarantined (unreadable quarantine file)"
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 10)
    assert shards.quarantine_reason(junk) == "quarantined (unreadable quarantine file)"


def test_open_h5_reasons(tmp_path):
    """Missing, a folder, not HDF5, truncated: each a StorageError naming the path."""
    with pytest.raises(StorageError, match=rf"^{tmp_path / 'none.h5'}: file not found$"):
        shards.open_h5(tmp_path / "none.h5")
    with pytest.raises(StorageError, match=rf"^{tmp_path}: not a file$"):
        shards.open_h5(str(tmp_path))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"0123456789" * 100)
    with pytest.raises(StorageError, match=rf"^{junk}: not an HDF5 file$"):
        shards.open_h5(junk)
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("x", data=np.arange(4000.0))
    with shards.open_h5(good) as f:
        assert f["x"].shape == (4000,)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(StorageError, match=rf"^{cut}: truncated or damaged HDF5 file$"):
        shards.open_h5(cut)


def test_open_h5_other_errors_keep_the_last_parenthesis(tmp_path, monkeypatch):
    """An unrecognised OSError reports the text in its last parentheses, or the whole message."""
    p = tmp_path / "x.h5"
    p.write_bytes(b"x")

    def boom(msg):
        def f(*a, **k):
            raise OSError(msg)
        return f

    monkeypatch.setattr(shards.h5py, "File", boom("Unable to open (a (b) c) (lock flag X)"))
    with pytest.raises(StorageError) as e:
        shards.open_h5(p)
    assert str(e.value) == f"{p}: cannot open as HDF5 (lock flag X)"
    monkeypatch.setattr(shards.h5py, "File", boom("locked by another process :)"))
    with pytest.raises(StorageError) as e:
        shards.open_h5(p)
    assert str(e.value) == f"{p}: cannot open as HDF5 (locked by another process :))"
    monkeypatch.setattr(shards.h5py, "File", boom("unexpected End Of File"))
    with pytest.raises(StorageError, match="truncated or damaged HDF5 file$"):
        shards.open_h5(p)
    monkeypatch.setattr(shards.h5py, "File", boom("bad EOF"))
    with pytest.raises(StorageError, match="truncated or damaged HDF5 file$"):
        shards.open_h5(p)
    monkeypatch.setattr(shards.h5py, "File", boom("file truncated"))
    with pytest.raises(StorageError, match="truncated or damaged HDF5 file$"):
        shards.open_h5(p)


def test_check_stage_file_every_problem(tiny_config, tmp_path):
    """Stage, fingerprint, operator range, missing datasets, shapes and dtypes, each named."""
    cfg = tiny_config
    p = tmp_path / "ic.h5"
    shards.write_stage_file(p, "initial_conditions", cfg, _ic_arrays(3), attrs={"start": 8, "stop": 11})
    assert shards.check_stage_file(p, "initial_conditions", cfg) == []
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=8, stop=11) == []
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=8) == []  # both needed for the range check
    assert shards.check_stage_file(p, "initial_conditions", cfg, stop=12) == []
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=9, stop=12) == [
        "holds operators [8, 11) (n=3), expected [9, 12)"]
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=8, stop=12) == [
        "holds operators [8, 11) (n=3), expected [8, 12)"]
    with h5py.File(p, "r+") as f:
        f.attrs["stop"] = 12
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=8, stop=12) == [
        "holds operators [8, 12) (n=3), expected [8, 12)"]
    with h5py.File(p, "r+") as f:
        f.attrs["stop"] = 11
        f.attrs["start"] = 7
        f.attrs["n"] = 4
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=7, stop=11) == [
        f"{PATHS.INPUT_FIELDS} has shape (3, 3, 16, 16), expected (4, 3, 16, 16)",
        f"{PATHS.IC_TYPES} has shape (3,), expected (4,)",
        f"{PATHS.OPERATOR_INDEX} has shape (3,), expected (4,)"]
    with h5py.File(p, "r+") as f:
        f.attrs["n"] = 3
        del f.attrs["start"]
        del f[PATHS.IC_TYPES]
        del f[PATHS.OPERATOR_INDEX]
        f.create_dataset(PATHS.OPERATOR_INDEX, data=np.arange(3, dtype=np.int32))
        f.attrs["stage"] = "rollouts"
    fp_msg = ("made from a different config or code version (stage_fingerprint mismatch: the config sections "
              "this stage or its inputs read, or a stage version, changed): re-materialize it")
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=-1, stop=2) == [
        "stage attribute 'rollouts' != 'initial_conditions'",
        "holds operators [None, 11) (n=3), expected [-1, 2)",
        f"missing dataset {PATHS.IC_TYPES}",
        f"{PATHS.OPERATOR_INDEX} has dtype int32, expected int64"]
    # a missing start or stop attribute reads as -1
    with h5py.File(p, "r+") as f:
        f.attrs["stage"] = "initial_conditions"
        del f[PATHS.OPERATOR_INDEX]
        f.create_dataset(PATHS.OPERATOR_INDEX, data=np.arange(3, dtype=np.int64))
        f.create_dataset(PATHS.IC_TYPES, data=encode_strings(["a", "b", "c"]))
        f.attrs["stop"] = 2
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=-1, stop=2) == []
    with h5py.File(p, "r+") as f:
        f.attrs["start"] = -4
        del f.attrs["stop"]
    assert shards.check_stage_file(p, "initial_conditions", cfg, start=-4, stop=-1) == []
    with h5py.File(p, "r+") as f:
        f.attrs["stage"] = "rollouts"
        f.attrs["stage_fingerprint"] = "0" * 16
        del f.attrs["n"]
    got = shards.check_stage_file(p, "initial_conditions", cfg)
    assert got[:2] == ["stage attribute 'rollouts' != 'initial_conditions'", fp_msg]
    assert f"{PATHS.INPUT_FIELDS} has shape (3, 3, 16, 16), expected (-1, 3, 16, 16)" in got
    assert shards.check_stage_file(tmp_path / "a b" / "none.h5", "initial_conditions", cfg) == ["file not found"]
    with h5py.File(p, "r+") as f:
        f.attrs["layout_version"] = "1.0"
    assert shards.check_stage_file(p, "initial_conditions", cfg) == [
        "written with the older layout 1.0 (this code writes 1.1): re-materialize it"]


def test_read_stage_file_returns_data_and_names_each_failure(tiny_config, tmp_path):
    """A good file reads back every dataset; a layout problem, a missing digest attribute, a
    dataset without a digest, a changed value and an unreadable chunk each raise naming the file."""
    cfg = tiny_config
    p = tmp_path / "ic.h5"
    arrays = _ic_arrays(3)
    shards.write_stage_file(p, "initial_conditions", cfg, arrays)
    got = shards.read_stage_file(str(p), "initial_conditions", cfg)
    assert sorted(got) == sorted(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "features_initial", cfg)
    assert str(e.value).startswith(f"{p}: stage attribute 'initial_conditions' != 'features_initial'; made from")
    with h5py.File(p, "r+") as f:
        d = json.loads(f.attrs["sha256"])
        f.attrs["sha256"] = json.dumps({k: v for k, v in d.items() if k != PATHS.IC_TYPES})
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "initial_conditions", cfg)
    assert str(e.value) == f"{p}: {PATHS.IC_TYPES} has no SHA-256 digest recorded: re-materialize it"
    with h5py.File(p, "r+") as f:
        f.attrs["sha256"] = json.dumps(d)
        f[PATHS.OPERATOR_INDEX][1] = 99
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "initial_conditions", cfg)
    assert str(e.value) == f"{p}: {PATHS.OPERATOR_INDEX} does not match its SHA-256 digest: corrupt data; re-materialize it"
    with h5py.File(p, "r+") as f:
        f.attrs["sha256"] = "[1, 2]"
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "initial_conditions", cfg)
    assert str(e.value) == (f"{p}: no valid 'sha256' digest attribute (written without integrity digests or damaged): "
                            "re-materialize it")


def test_read_stage_file_unreadable_dataset_reason(tiny_config, tmp_path, monkeypatch):
    """A dataset read error is reported with the first line of its message, or its type name."""
    cfg = tiny_config
    p = tmp_path / "fi.h5"
    shards.write_stage_file(p, "features_initial", cfg, {PATHS.INITIAL: np.ones((2, 42))})
    real = h5py.Dataset.__getitem__

    def failing(msg, exc=OSError):
        def f(self, key):
            if self.name == "/" + PATHS.INITIAL:
                raise exc(msg)
            return real(self, key)
        return f

    monkeypatch.setattr(h5py.Dataset, "__getitem__", failing("  Can't read data (fletcher32)\nmore detail"))
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "features_initial", cfg)
    assert str(e.value) == f"{p}: {PATHS.INITIAL} cannot be read, corrupt data (Can't read data (fletcher32)): re-materialize it"
    monkeypatch.setattr(h5py.Dataset, "__getitem__", failing("   ", RuntimeError))
    with pytest.raises(StorageError) as e:
        shards.read_stage_file(p, "features_initial", cfg)
    assert str(e.value) == f"{p}: {PATHS.INITIAL} cannot be read, corrupt data (RuntimeError): re-materialize it"
    monkeypatch.setattr(h5py.Dataset, "__getitem__", failing("bad", ValueError))
    with pytest.raises(StorageError, match=r"corrupt data \(bad\)"):
        shards.read_stage_file(p, "features_initial", cfg)


def test_commit_stage_file_clears_the_other_location(tiny_config, tmp_path, caplog):
    """A passing write removes an old quarantined file; a failing one removes the reader file and
    logs the failed checks."""
    cfg = tiny_config
    path, q = tmp_path / "a" / "p.h5", tmp_path / "q" / "p.h5"
    arr = {PATHS.INITIAL: np.ones((2, 42))}
    with caplog.at_level(logging.WARNING, logger=LOG):
        res = shards.commit_stage_file(str(path), str(q), "features_initial", cfg, arr, [_Check("c1", True, "bad")],
                                       attrs={"shard": 3}, dataset_attrs={PATHS.INITIAL: {"version": "q1"}})
    assert res.quarantined is True and res.failed == ["c1"] and q.exists() and not path.exists()
    assert caplog.messages == [f"{path}: blocking check(s) ['c1'] failed; written to quarantine {q}"]
    with h5py.File(q, "r") as f:
        assert f.attrs["shard"] == 3 and f[PATHS.INITIAL].attrs["version"] == "q1"
        assert json.loads(f.attrs["quarantined_by"]) == [{"check": "c1", "description": "bad"}]
    res = shards.commit_stage_file(path, q, "features_initial", cfg, arr, [_Check("c1", False)])
    assert res.quarantined is False and res.failed == [] and res.write.path == path and path.exists() and not q.exists()
    res = shards.commit_stage_file(path, q, "features_initial", cfg, arr, [_Check("c2", True)])
    assert res.quarantined and not path.exists() and q.exists()


# ------------------------------------------------------------------------------------ grouping


def test_operator_bytes_and_budget_bytes_by_hand(monkeypatch):
    """Trajectory ``M*T*C*H*W*4`` plus 10 activations ``M*widest*H*W*4`` (widest = 4b for 3
    layers); the budget: configured GiB, 2 GiB on the CPU, 40% of free CUDA memory."""
    import torch

    from spinlock_core.config.batching import BatchingConfig
    from spinlock_core.generation import grouping
    from spinlock_core.operators.spec import OperatorSpec

    spec = OperatorSpec(num_layers=3, base_channels=4, grid_size=8, channels=3)  # widths 4, 8, 16
    assert grouping.operator_bytes(spec, 2, 5) == 2 * 5 * 3 * 64 * 4 + 10 * 2 * 16 * 64 * 4
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert grouping.budget_bytes(BatchingConfig(memory_budget_gb=0.5), cpu) == 2**29
    assert grouping.budget_bytes(BatchingConfig(memory_budget_gb=0.5), cuda) == 2**29
    assert grouping.budget_bytes(BatchingConfig(), cpu) == 2 * 2**30
    seen = []
    monkeypatch.setattr(grouping.torch.cuda, "mem_get_info", lambda d: seen.append(d) or (1000, 5000))
    assert grouping.budget_bytes(BatchingConfig(), cuda) == 400
    assert seen == [cuda]


def test_resolve_group_size_auto_cuda_caps_and_log(monkeypatch, caplog):
    """auto on CUDA: the budget's fit, at most 128; a number is capped (and logged) only when the
    budget is smaller; never below 1."""
    import torch

    from spinlock_core.config.batching import BatchingConfig
    from spinlock_core.generation import grouping

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(grouping.torch.cuda, "mem_get_info", lambda d: (10_000, 20_000))  # budget 4000
    assert grouping.resolve_group_size(BatchingConfig(), cuda, 1000) == 4
    assert grouping.resolve_group_size(BatchingConfig(), cuda, 1001) == 3
    assert grouping.resolve_group_size(BatchingConfig(), cuda, 10) == 128
    assert grouping.resolve_group_size(BatchingConfig(), cuda, 5000) == 1
    assert grouping.resolve_group_size(BatchingConfig(), cuda, 0) == 128
    assert grouping.resolve_group_size(BatchingConfig(), cpu, 10) == 1
    gb = 4000 / 2**30
    with caplog.at_level(logging.INFO, logger="spinlock_core.generation.grouping"):
        assert grouping.resolve_group_size(BatchingConfig(group_size=4, memory_budget_gb=gb), cpu, 1000) == 4
        assert caplog.messages == []
        assert grouping.resolve_group_size(BatchingConfig(group_size=8, memory_budget_gb=gb), cpu, 1000) == 4
        assert grouping.resolve_group_size(BatchingConfig(group_size=3, memory_budget_gb=gb), cpu, 0) == 3
        assert grouping.resolve_group_size(BatchingConfig(group_size=2, memory_budget_gb=gb), cpu, 9000) == 1
    # a 5-byte budget: operators of 1 byte (or 0) fit five times
    five = BatchingConfig(group_size=4, memory_budget_gb=5 / 2**30)
    assert grouping.resolve_group_size(five, cpu, 1) == 4 and grouping.resolve_group_size(five, cpu, 0) == 4
    assert caplog.messages == ["simulation.batching: group_size 8 capped at 4 by the memory budget",
                               "simulation.batching: group_size 2 capped at 1 by the memory budget"]


def test_plan_groups_empty_singletons_and_groups():
    """No specs: no groups, size 1; G = 1: one group per operator; G > 1: by signature."""
    import torch

    from spinlock_core.config.batching import BatchingConfig
    from spinlock_core.generation.grouping import plan_groups
    from spinlock_core.operators.spec import OperatorSpec

    cpu = torch.device("cpu")
    empty = plan_groups([], BatchingConfig(group_size=4), cpu, realizations=2, num_timesteps=3)
    assert empty.groups == [] and empty.group_size == 1 and len(empty) == 0
    a = OperatorSpec(num_layers=2, base_channels=4, grid_size=8)
    b = OperatorSpec(num_layers=2, base_channels=4, grid_size=8, update_policy="convex")
    one = plan_groups([a, b, a], BatchingConfig(), cpu, realizations=2, num_timesteps=3)
    assert one.groups == [[0], [1], [2]] and one.group_size == 1 and len(one) == 3
    two = plan_groups([a, b, a, a], BatchingConfig(group_size=2), cpu, realizations=2, num_timesteps=3)
    assert two.groups == [[0, 2], [3], [1]] and two.group_size == 2 and len(two) == 3
    # the largest operator sets the budget's fit: 2 of the big one fit, so groups of 2
    big = OperatorSpec(num_layers=3, base_channels=4, grid_size=8)
    from spinlock_core.generation.grouping import operator_bytes

    per = operator_bytes(big, 2, 3)
    cfg = BatchingConfig(group_size=8, memory_budget_gb=2.5 * per / 2**30)
    plan = plan_groups([a, a, a, big], cfg, cpu, realizations=2, num_timesteps=3)
    assert plan.group_size == 2 and plan.groups == [[0, 1], [2], [3]]


# ---------------------------------------------------------------------------------- simulation


def _sim_inputs(cfg, idx):
    from spinlock_core.generation import ic_types_for, initial_conditions_for, sample_parameters

    unit, _ = sample_parameters(cfg)
    return unit[idx], initial_conditions_for(cfg, idx, ic_types_for(cfg, idx))


def _reference_rollout(cfg, unit_row, ic, index):
    """One operator rolled out by hand: decoded spec, rebuilt operator, :func:`rollout`."""
    import torch

    from spinlock_core.operators import build_operator, operator_spec
    from spinlock_core.rollout import rollout
    from spinlock_core.sampling import decode_row

    s = cfg.simulation
    spec = operator_spec(decode_row(np.asarray(unit_row, np.float64), cfg.parameter_space), grid_size=16, channels=3,
                         dt=s.dt, alpha=s.alpha)
    op = build_operator(spec, root_seed=cfg.root_seed, index=int(index), num_steps=s.num_timesteps - 1,
                        noise_period=s.noise_period)
    r = rollout(op, torch.from_numpy(ic), realizations=s.num_realizations, num_timesteps=s.num_timesteps,
                root_seed=cfg.root_seed, index=int(index), divergence_threshold=s.divergence_threshold)
    return spec, r


def test_simulate_operators_rejects_disagreeing_lengths(tiny_config):
    """indices, unit and ics must have the same N; the message gives all three."""
    from spinlock_core.generation import simulate_operators

    unit, ics = np.zeros((2, 11)), np.zeros((3, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match=r"^indices, unit and ics disagree on n: 3, 2, 3$"):
        simulate_operators(tiny_config, [0, 1, 2], unit, ics)
    with pytest.raises(ValueError, match=r"^indices, unit and ics disagree on n: 2, 2, 3$"):
        simulate_operators(tiny_config, [0, 1], unit, ics)


def test_simulate_operators_loop_batches_progress_and_accounting(write_config):
    """G = 1: consumers get batches of ``batch_size`` (global indices, trajectories [B, M, T, C,
    H, W], operators, specs); trajectories equal a hand rollout; steps, FLOPs and timings add up."""
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import simulate_operators

    cfg = load_experiment(write_config(sampling__batch_size=2))
    idx = np.array([5, 9, 13])
    unit, ics = _sim_inputs(cfg, idx)
    calls, progress = [], []

    def consumer(indices, traj, ops, specs):
        calls.append((indices.tolist(), tuple(traj.shape), len(ops), specs, traj.clone()))
        time.sleep(0.01)

    t0 = time.perf_counter()
    res = simulate_operators(cfg, idx.astype(np.int32), unit, ics, consumers=[consumer], keep_trajectories=True,
                             progress=lambda d, t: progress.append((d, t)), device="cpu")
    elapsed = time.perf_counter() - t0
    assert res.device == "cpu" and res.indices.dtype == np.int64 and res.indices.tolist() == [5, 9, 13]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert res.diverged.dtype == np.bool_ and res.valid_states.dtype == np.int32
    assert [c[:3] for c in calls] == [([5, 9], (2, 2, 6, 3, 16, 16), 2), ([13], (1, 2, 6, 3, 16, 16), 1)]
    assert res.timings == {"group_size": 1, "groups": 3}
    assert res.trajectories.shape == (3, 2, 6, 3, 16, 16) and res.trajectories.dtype == np.float32
    steps = flops = 0
    for j, i in enumerate(idx):
        spec, r = _reference_rollout(cfg, unit[j], ics[j], i)
        assert res.specs[j] == spec
        np.testing.assert_array_equal(res.trajectories[j], r.trajectory.numpy())
        assert res.valid_states[j] == r.valid_states and res.diverged[j] == r.diverged
        steps += (r.valid_states - 1) * 2
        flops += spec.conv_flops(2) * (r.valid_states - 1)
    assert calls[0][3] == res.specs[:2] and calls[1][3] == res.specs[2:]
    np.testing.assert_array_equal(calls[1][4].numpy()[0], res.trajectories[2])
    assert res.operator_steps == steps and res.conv_flops == pytest.approx(flops, rel=1e-12)
    assert 0.02 <= res.seconds_consumers <= elapsed
    assert 0 < res.seconds_rollout <= elapsed - res.seconds_consumers
    # the stage arrays, value by value
    arrays = res.rollout_arrays()
    assert sorted(arrays) == sorted([PATHS.POLICIES, PATHS.GRID_SIZES, PATHS.NOISE_REGIMES, PATHS.DIVERGED,
                                     PATHS.VALID_STATES, PATHS.OUTPUT_FIELDS])
    assert arrays[PATHS.POLICIES].tolist() == [s.update_policy.encode() for s in res.specs]
    regimes = [b"low" if s.noise_scale < 0.01 else b"medium" if s.noise_scale < 0.1 else b"high" for s in res.specs]
    assert arrays[PATHS.NOISE_REGIMES].tolist() == regimes
    assert arrays[PATHS.GRID_SIZES].dtype == np.int32 and arrays[PATHS.GRID_SIZES].tolist() == [16, 16, 16]
    assert arrays[PATHS.VALID_STATES].dtype == np.int32
    assert arrays[PATHS.DIVERGED] is res.diverged and arrays[PATHS.OUTPUT_FIELDS] is res.trajectories


def test_simulate_operators_without_kept_trajectories_and_diverging_operators(write_config, caplog, monkeypatch):
    """Trajectories are not kept by default (``store_trajectories`` false); a diverging operator
    is logged with its global index and the states it kept; without ``progress`` a tqdm bar
    counts the operators."""
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import simulate_operators

    cfg = load_experiment(write_config(simulation__divergence_threshold=1e-3))
    idx = np.array([3, 4])
    unit, ics = _sim_inputs(cfg, idx)
    bars = []

    class FakeBar:
        """Stands in for tqdm: records its arguments, updates and close."""

        def __init__(self, **kw):
            self.kw, self.n, self.updates, self.closed = kw, 0, [], 0
            bars.append(self)

        def update(self, k):
            self.updates.append(k)
            self.n += k

        def close(self):
            self.closed += 1

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    with caplog.at_level(logging.WARNING, logger="spinlock_core.generation.simulate"):
        res = simulate_operators(cfg, idx, unit, ics, progress=None)
    assert len(bars) == 1
    assert bars[0].kw == {"total": 2, "desc": "rollouts", "unit": "op", "disable": None, "leave": False}
    assert bars[0].updates == [1, 1] and bars[0].n == 2 and bars[0].closed == 1
    assert res.trajectories is None and PATHS.OUTPUT_FIELDS not in res.rollout_arrays()
    assert res.diverged.tolist() == [True, True]
    valid = [_reference_rollout(cfg, unit[j], ics[j], i)[1].valid_states for j, i in enumerate(idx)]
    assert res.valid_states.tolist() == valid and all(v < 6 for v in valid)
    assert caplog.messages == [f"operator {i} diverged after {v} of 6 states" for i, v in zip(idx, valid)]
    assert res.operator_steps == sum((v - 1) * 2 for v in valid)


def test_simulate_operators_grouped_matches_the_loop(write_config, caplog):
    """A numeric group size rolls out by signature groups (logged), feeding consumers slices of
    ``batch_size``; the trajectories match the loop's to float32 rounding."""
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import simulate_operators

    one = {"type": "choice", "choices": [2]}
    cfg = load_experiment(write_config(sampling__batch_size=1, simulation__batching={"group_size": 2, "memory_budget_gb": 1.0},
                                       parameter_space__architecture__num_layers=one,
                                       parameter_space__architecture__base_channels=one,
                                       parameter_space__architecture__kernel_size={"type": "choice", "choices": [3]}))
    idx = np.arange(6)
    unit, ics = _sim_inputs(cfg, idx)
    from spinlock_core.operators.grouped import group_by_signature, signature

    calls, progress = [], []
    with caplog.at_level(logging.INFO, logger="spinlock_core.generation.simulate"):
        res = simulate_operators(cfg, idx, unit, ics, keep_trajectories=True, progress=lambda d, t: progress.append((d, t)),
                                 consumers=[lambda i, tr, ops, sp: calls.append((i.tolist(), tuple(tr.shape), len(ops), len(sp)))])
    groups = group_by_signature(res.specs, 2)
    assert res.timings == {"group_size": 2, "groups": len(groups)}
    assert caplog.messages == [f"rolling out 6 operators in {len(groups)} groups of at most 2"]
    assert [c[0] for c in calls] == [[j] for g in groups for j in g]
    assert all(c[1] == (1, 2, 6, 3, 16, 16) and c[2] == 1 and c[3] == 1 for c in calls)
    done = np.cumsum([len(g) for g in groups]).tolist()
    assert progress == [(d, 6) for d in done]
    assert len({signature(s) for s in res.specs}) < 6  # some real groups
    for j in idx:
        _, r = _reference_rollout(cfg, unit[j], ics[j], j)
        np.testing.assert_allclose(res.trajectories[j], r.trajectory.numpy(), rtol=1e-4, atol=1e-5)
        assert res.valid_states[j] == r.valid_states
    assert res.seconds_rollout > 0 and res.operator_steps == sum((v - 1) * 2 for v in res.valid_states.tolist())


# ------------------------------------------------------------------------------------ integrity


class _FakeDataset:
    """A numpy array posing as an h5py dataset; records every read key."""

    def __init__(self, a, chunks=None):
        self.a, self.chunks, self.reads = a, chunks, []
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim

    def __getitem__(self, key):
        self.reads.append(key)
        return self.a[key]


def test_digest_header_and_dtype_check():
    """The hashed header is ``<dtype.str>|<d0>,<d1>|``; blocks of another dtype are refused."""
    from spinlock_core.storage.integrity import Digest, array_digest

    a = np.arange(12, dtype=">i4").reshape(3, 4)
    d = Digest((3, 4), ">i4")
    assert d.dtype == np.dtype(">i4")
    d.update(a[:1])
    d.update(a[1:])
    want = hashlib.sha256(b">i4|3,4|" + a.tobytes()).hexdigest()
    assert d.hexdigest() == want == array_digest(a)
    assert array_digest(np.float64(2.5)) == hashlib.sha256(b"<f8||" + np.float64(2.5).tobytes()).hexdigest()
    with pytest.raises(ValueError, match=r"^digest of a >i4 array fed a int64 block$"):
        Digest((3, 4), ">i4").update(np.zeros(4, dtype=np.int64))
    # a non-contiguous block hashes its C-order values
    f = np.asfortranarray(np.arange(6, dtype="<u2").reshape(2, 3))
    assert array_digest(f) == hashlib.sha256(b"<u2|2,3|" + np.arange(6, dtype="<u2").tobytes()).hexdigest()


def test_dataset_digest_reads_whole_rows_and_whole_chunks(monkeypatch):
    """Blocks of ``_BLOCK_BYTES // row bytes`` rows, rounded down to whole chunks (at least one
    chunk); empty and scalar datasets are read at once; the digest equals ``array_digest``."""
    from spinlock_core.storage import integrity
    from spinlock_core.storage.integrity import array_digest, dataset_digest

    a = np.arange(30, dtype=np.float32).reshape(10, 3)  # 12 bytes a row
    monkeypatch.setattr(integrity, "_BLOCK_BYTES", 50)  # 4 rows
    ds = _FakeDataset(a)
    assert dataset_digest(ds) == array_digest(a)
    assert ds.reads == [slice(0, 4), slice(4, 8), slice(8, 12)]
    ds = _FakeDataset(a, chunks=(3, 2))  # 4 rows -> 3 (whole chunks along N)
    assert dataset_digest(ds) == array_digest(a)
    assert ds.reads == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]
    monkeypatch.setattr(integrity, "_BLOCK_BYTES", 100)  # 8 rows -> 6 with chunks of 3
    ds = _FakeDataset(a, chunks=(3, 3))
    assert dataset_digest(ds) == array_digest(a)
    assert ds.reads == [slice(0, 6), slice(6, 12)]
    monkeypatch.setattr(integrity, "_BLOCK_BYTES", 5)  # less than a row: one row, or one chunk
    ds = _FakeDataset(a)
    dataset_digest(ds)
    assert ds.reads == [slice(i, i + 1) for i in range(10)]
    ds = _FakeDataset(a, chunks=(4, 3))
    assert dataset_digest(ds) == array_digest(a)
    assert ds.reads == [slice(0, 4), slice(4, 8), slice(8, 12)]
    # rows of zero bytes: one row per block, not a division by zero
    z = np.zeros((3, 0), dtype=np.float32)
    ds = _FakeDataset(z)
    assert dataset_digest(ds) == array_digest(z) and ds.reads == [slice(0, 5)]
    for arr in (np.zeros((0, 4), np.int16), np.array(7, np.int64)):
        ds = _FakeDataset(arr)
        assert dataset_digest(ds) == array_digest(arr) and ds.reads == [()]
    # the default block is 64 MiB
    assert integrity._BLOCK_BYTES == 5
    monkeypatch.undo()
    assert integrity._BLOCK_BYTES == 64 * 2**20


def test_read_digests_accepts_only_json_objects_of_strings(tmp_path):
    """Absent, not JSON, not an object, or a non-string value: None; bytes are decoded."""
    from spinlock_core.storage.integrity import read_digests

    p = tmp_path / "d.h5"
    with h5py.File(p, "w") as f:
        assert read_digests(f) is None
        f.attrs["sha256"] = "{not json"
        assert read_digests(f) is None
        f.attrs["sha256"] = "[1, 2]"
        assert read_digests(f) is None
        f.attrs["sha256"] = json.dumps({"a": "x", "b": 1})
        assert read_digests(f) is None
        f.attrs["sha256"] = json.dumps({"a": "x", "b": "y"})
        assert read_digests(f) == {"a": "x", "b": "y"}
        f.attrs["sha256"] = np.bytes_(json.dumps({"c": "z"}).encode())
        assert read_digests(f) == {"c": "z"}
        f.attrs["sha256"] = json.dumps({})
        assert read_digests(f) == {}


def test_verify_datasets_messages(tmp_path, monkeypatch):
    """Each dataset's problem names it: no digest, unreadable (first line of the error), or a
    mismatch with both 16-digit prefixes; a file without digests is one problem."""
    from spinlock_core.storage import integrity
    from spinlock_core.storage.integrity import _verify_datasets, array_digest

    a, b, c = np.arange(4.0), np.arange(3, dtype=np.int8), np.ones(2)
    p = tmp_path / "v.h5"
    with h5py.File(p, "w") as f:
        for k, v in {"a": a, "b": b, "c": c}.items():
            f.create_dataset(k, data=v)
        assert _verify_datasets(f, ["a"]) == [
            "no valid 'sha256' digest attribute: written without integrity digests or damaged; re-materialize it"]
        f.attrs["sha256"] = json.dumps({"a": array_digest(a), "b": "f" * 64, "c": array_digest(c), "gone": "0" * 64})
        got_b = array_digest(b)
        assert _verify_datasets(f, ["a", "b", "c", "d", "gone"]) == [
            f"b: content does not match its SHA-256 digest (stored {'f' * 16}, read {got_b[:16]}): corrupt data; re-materialize it",
            "d: no SHA-256 digest recorded for this dataset; re-materialize it",
            "gone: cannot be read, corrupt data (\"Unable to synchronously open object (object 'gone' doesn't exist)\"); "
            "re-materialize it"]
        real = integrity.dataset_digest

        def failing(ds):
            if ds.name == "/a":
                raise RuntimeError("  chunk 3 bad\nsecond")
            return real(ds)

        monkeypatch.setattr(integrity, "dataset_digest", failing)
        assert _verify_datasets(f, ["a", "b"]) == [
            "a: cannot be read, corrupt data (chunk 3 bad); re-materialize it",
            f"b: content does not match its SHA-256 digest (stored {'f' * 16}, read {got_b[:16]}): corrupt data; re-materialize it"]


def test_unreadable_dataset_reason_is_a_type_name_or_200_characters(tmp_path, monkeypatch):
    """An empty error message is reported as the exception's type name; a long first line is cut
    at 200 characters."""
    from spinlock_core.storage import integrity
    from spinlock_core.storage.integrity import _verify_datasets

    p = tmp_path / "v.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("a", data=np.arange(3))
        f.attrs["sha256"] = json.dumps({"a": "0" * 64})
        for exc, reason in ((KeyError(), "KeyError"), (ValueError("   "), "ValueError"), (OSError("y" * 250 + "\nz"), "y" * 200)):
            monkeypatch.setattr(integrity, "dataset_digest", lambda ds, exc=exc: (_ for _ in ()).throw(exc))
            assert _verify_datasets(f, ["a"]) == [f"a: cannot be read, corrupt data ({reason}); re-materialize it"], reason


def test_verify_dataset_file_names_orphan_digests_and_open_failures(tmp_path, monkeypatch):
    """A recorded digest without its dataset is reported (sorted); an unopenable file gives the
    open reason without the path; a file of another layout gives the layout problem."""
    from spinlock_core.storage.integrity import array_digest, verify_dataset_file

    p = tmp_path / "ds.h5"
    a = np.arange(5, dtype=np.int32)
    with h5py.File(p, "w") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION
        f.attrs["stage"] = "dataset"
        f.create_dataset("grp/a", data=a)
        f.attrs["sha256"] = json.dumps({"grp/a": array_digest(a), "z/x": "0" * 64, "b": "1" * 64})
    assert verify_dataset_file(str(p)) == ["b: has a recorded digest but no such dataset",
                                           "z/x: has a recorded digest but no such dataset"]
    with h5py.File(p, "r+") as f:
        f.attrs["sha256"] = json.dumps({"grp/a": array_digest(a)})
    assert verify_dataset_file(p) == []
    with h5py.File(p, "r+") as f:
        f.attrs["sha256"] = "[]"
    assert verify_dataset_file(p) == [
        "no valid 'sha256' digest attribute: written without integrity digests or damaged; re-materialize it"]
    assert verify_dataset_file(tmp_path / "a b" / "missing.h5") == ["file not found"]  # a space in the path
    real_visit = h5py.Group.visititems

    def broken(self, fn):
        raise RuntimeError("  B-tree broken\nat node 3")

    monkeypatch.setattr(h5py.Group, "visititems", broken)
    assert verify_dataset_file(p) == ["damaged HDF5 structure (B-tree broken)"]
    monkeypatch.setattr(h5py.Group, "visititems", real_visit)
    real_file = h5py.File

    def unopenable(path, mode="r", **kw):
        if str(path) == str(p):
            raise OSError("Unable to open file (errno: 13, reason: denied)")
        return real_file(path, mode, **kw)

    monkeypatch.setattr(h5py, "File", unopenable)
    # the reason keeps its own ": " (only the path prefix is cut)
    assert verify_dataset_file(p) == ["cannot open as HDF5 (errno: 13, reason: denied)"]
    assert shards.check_stage_file(p, "parameters", None) == ["cannot open as HDF5 (errno: 13, reason: denied)"]
    monkeypatch.setattr(h5py, "File", real_file)
    with h5py.File(p, "r+") as f:
        del f.attrs["layout_version"]
    assert verify_dataset_file(p) == ["not a Spinlock file (no layout_version attribute)"]
    with h5py.File(p, "r+") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION
        f.attrs["stage"] = "rollouts"
    assert verify_dataset_file(p) == ["stage attribute 'rollouts' != 'dataset': not a consolidated dataset file"]


def test_verify_stage_file_returns_layout_problems_alone(tiny_config, tmp_path):
    """Attribute problems are returned without reading data; a good file has none; a changed
    value is a digest problem."""
    from spinlock_core.storage.integrity import verify_stage_file

    cfg = tiny_config
    p = tmp_path / "ic.h5"
    shards.write_stage_file(p, "initial_conditions", cfg, _ic_arrays(3), attrs={"start": 0, "stop": 3})
    assert verify_stage_file(str(p), "initial_conditions", cfg, 0, 3) == []
    assert verify_stage_file(p, "initial_conditions", cfg, start=1, stop=4) == [
        "holds operators [0, 3) (n=3), expected [1, 4)"]
    assert verify_stage_file(tmp_path / "a b" / "none.h5", "initial_conditions", cfg) == ["file not found"]
    with h5py.File(p, "r+") as f:
        f[PATHS.OPERATOR_INDEX][0] = 5
    got = verify_stage_file(p, "initial_conditions", cfg, start=0, stop=3)
    assert len(got) == 1 and got[0].startswith(f"{PATHS.OPERATOR_INDEX}: content does not match its SHA-256 digest")
    # a rollouts file (whose trajectory dataset depends on the config): every dataset verified
    r = tmp_path / "r.h5"
    arrays = {PATHS.POLICIES: encode_strings(["residual"]), PATHS.GRID_SIZES: np.array([16], np.int32),
              PATHS.NOISE_REGIMES: encode_strings(["low"]), PATHS.DIVERGED: np.array([False]),
              PATHS.VALID_STATES: np.array([6], np.int32)}
    shards.write_stage_file(r, "rollouts", cfg, arrays)
    assert verify_stage_file(r, "rollouts", cfg) == []
    with h5py.File(r, "r+") as f:
        f[PATHS.VALID_STATES][0] = 2
    got = verify_stage_file(r, "rollouts", cfg)
    assert len(got) == 1 and got[0].startswith(f"{PATHS.VALID_STATES}: content does not match")


def test_verify_stage_file_file_gone_after_the_check(tiny_config, tmp_path, monkeypatch):
    """A file replaced between the attribute check and the read reports the open error without
    its path (the reason keeps its own ": ")."""
    from spinlock_core.storage.integrity import verify_stage_file

    p = tmp_path / "a b" / "x.h5"

    def gone(path):
        raise StorageError(f"{path}: cannot open as HDF5 (errno: 2, gone)")

    monkeypatch.setattr(shards, "check_stage_file", lambda *a, **k: [])
    monkeypatch.setattr(shards, "open_h5", gone)
    assert verify_stage_file(p, "initial_conditions", tiny_config) == ["cannot open as HDF5 (errno: 2, gone)"]


# ---------------------------------------------------------------------------- dataset helpers


def test_attr_value_conversions_at_their_limits():
    """bytes decoded (bad bytes replaced); arrays of up to 16 values listed, larger summarised;
    numpy scalars unwrapped; strings cut after 200 characters."""
    from spinlock_core.storage.dataset import _attr_value, _kw

    assert _attr_value(b"ok \xff") == "ok \ufffd"
    assert _attr_value(np.arange(16)) == list(range(16))
    assert _attr_value(np.zeros((17,), np.int8)) == "array[17] int8"
    assert _attr_value(np.zeros((2, 9), np.float32)) == "array[2, 9] float32"
    v = _attr_value(np.int32(7))
    assert v == 7 and type(v) is int
    assert _attr_value("s" * 200) == "s" * 200
    assert _attr_value("s" * 201) == "s" * 200 + "... (201 chars)"
    assert _attr_value(3) == 3
    # chunked and checksummed unless empty
    assert _kw({"compression": "lzf"}, (0, 5), None) == {}


def test_kw_chunks_of_chunk_size(tiny_config):
    """A non-empty dataset: the filters, ``chunk_size`` operators per chunk and fletcher32."""
    from spinlock_core.storage.dataset import _kw

    assert _kw({"compression": "lzf", "shuffle": True}, (10, 7), tiny_config) == {
        "compression": "lzf", "shuffle": True, "chunks": (4, 7), "fletcher32": True}


# ------------------------------------------------------------------------------------- stages


def test_stage_and_shard_result_write_shares():
    """write_share = write seconds / total (a zero total does not divide by zero);
    write_seconds sums the stage writes."""
    from spinlock_core.generation.stages import ShardResult, StageResult
    from spinlock_core.storage.shards import WriteStats

    r = StageResult(WriteStats(Path("a"), 1.5, 10), 6.0)
    assert r.write_share == 0.25 and r.checks == [] and r.quarantined is False
    assert StageResult(WriteStats(Path("a"), 2e-12, 1), 0.0).write_share == pytest.approx(2.0)
    s = ShardResult(None, {"a": r, "b": StageResult(WriteStats(Path("b"), 0.25, 1), 1.0)}, {}, {}, 3.0)
    assert s.write_seconds == 1.75


def test_stage_inputs_quarantine_family_errors_and_ic_attrs(write_config, tmp_path):
    """A quarantined input with no reader file is refused with its reason; the shard inputs are
    the partition's rows; the IC and INITIAL files carry shard/start/stop, family and version."""
    from spinlock_core.config import load_experiment
    from spinlock_core.features.extract import initial_family
    from spinlock_core.features.families import FAMILIES, feature_names
    from spinlock_core.generation import stages as st
    from spinlock_core.storage.paths import ExperimentPaths

    cfg = load_experiment(write_config(sampling__total_samples=8, dataset__storage__shard_size=4,
                                       sampling__validation__max_discrepancy=1.0, features__initial__enabled=True))
    paths = ExperimentPaths.for_config(cfg, tmp_path / "home")
    res, unit, _ = st.write_parameters(cfg, paths)
    assert not res.quarantined and res.seconds_total >= res.write.seconds >= 0
    res, types, fields = st.write_initial_conditions(cfg, paths, 1)
    assert res.write.path == paths.shard("initial_conditions", 1) and not res.quarantined
    with h5py.File(res.write.path, "r") as f:
        assert (f.attrs["shard"], f.attrs["start"], f.attrs["stop"]) == (1, 4, 8)
        assert f[PATHS.OPERATOR_INDEX][()].tolist() == [4, 5, 6, 7]
        assert [t.decode() for t in f[PATHS.IC_TYPES][()]] == list(types)
    idx, u, ics = st.load_shard_inputs(cfg, paths, 1)
    assert idx.tolist() == [4, 5, 6, 7]
    np.testing.assert_array_equal(u, unit[4:8])
    np.testing.assert_array_equal(ics, fields)
    res, values = st.write_feature_family(cfg, paths, 1, "initial")
    np.testing.assert_array_equal(values, initial_family(fields))
    with h5py.File(res.write.path, "r") as f:
        assert (f.attrs["shard"], f.attrs["start"], f.attrs["stop"]) == (1, 4, 8)
        assert f.attrs["family"] == "initial" and f.attrs["version"] == FAMILIES["initial"].version
        ds = f[PATHS.INITIAL]
        assert [n.decode() if isinstance(n, bytes) else n for n in ds.attrs["feature_names"]] == list(
            feature_names("initial", cfg)[PATHS.INITIAL])
        assert ds.attrs["version"] == FAMILIES["initial"].version
    with pytest.raises(ValueError, match=r"^family 'summary' is computed inside the rollout loop \(simulate_shard\)$"):
        st.write_feature_family(cfg, paths, 1, "summary")
    # quarantined IC shard 0 (no reader file): refused with the recorded reason
    q = paths.quarantined_shard("initial_conditions", 0)
    shards.commit_stage_file(paths.shard("initial_conditions", 0), q, "initial_conditions", cfg,
                             {**_ic_arrays(4), PATHS.OPERATOR_INDEX: np.arange(4)}, [_Check("ic_check", True, "odd")])
    p0 = paths.shard("initial_conditions", 0)
    with pytest.raises(StorageError) as e:
        st.load_shard_inputs(cfg, paths, 0)
    assert str(e.value) == (f"{p0}: not available: the last write was quarantined (ic_check failed (odd)); "
                            "fix and re-materialize it")
    # a reader file next to an old quarantined one is read
    st.write_initial_conditions(cfg, paths, 0)
    q.parent.mkdir(parents=True, exist_ok=True)
    shards.write_stage_file(q, "initial_conditions", cfg, {**_ic_arrays(4), PATHS.OPERATOR_INDEX: np.arange(4)})
    assert st.load_shard_inputs(cfg, paths, 0)[0].tolist() == [0, 1, 2, 3]
    # no file at all: the reader's own error
    paths.shard("initial_conditions", 0).unlink()
    q.unlink()
    with pytest.raises(StorageError, match=rf"^{p0}: file not found$"):
        st.load_shard_inputs(cfg, paths, 0)


def test_write_rollouts_is_simulate_shard_without_families(monkeypatch):
    """``write_rollouts`` passes its arguments through with no feature family and returns the
    rollouts stage result and the simulation."""
    from spinlock_core.generation import stages as st

    seen = {}

    class Res:
        stages = {"rollouts": "the rollouts result", "features_summary": "other"}
        simulation = "the simulation"

    def fake(cfg, paths, shard, **kw):
        seen.update(cfg=cfg, paths=paths, shard=shard, **kw)
        return Res()

    monkeypatch.setattr(st, "simulate_shard", fake)
    prog, cons = (lambda d, t: None), [object()]
    assert st.write_rollouts("C", "P", 3, device="cpu", progress=prog, consumers=cons) == ("the rollouts result",
                                                                                          "the simulation")
    assert seen == {"cfg": "C", "paths": "P", "shard": 3, "families": set(), "device": "cpu", "progress": prog,
                    "consumers": cons}
    st.write_rollouts("C", "P", 0)
    assert seen["device"] is None and seen["progress"] is None and seen["consumers"] == ()
