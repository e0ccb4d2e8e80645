"""The ``file_integrity`` asset checks in Dagster: they pass after a materialization, the
``verify_files`` job finds a shard damaged on disk afterwards (and only that one), and
materializing the partition again regenerates it byte for byte."""

from __future__ import annotations

import hashlib

import dagster as dg
import h5py


def _evaluations(result) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()
            if e.check_name == "file_integrity"}


def test_a_damaged_shard_fails_its_check_and_is_regenerated_identically(write_config, tmp_path):
    from spinlock_assets.definitions import build_definitions
    from spinlock_core.config import load_experiment
    from spinlock_core.storage.paths import ExperimentPaths

    cfg_path = write_config()
    defs = build_definitions(cfg_path)
    paths = ExperimentPaths.for_config(load_experiment(cfg_path), tmp_path / "home")
    shard_assets = [dg.AssetKey(k.split("/")) for k in
                    ("initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture")]
    with dg.instance_for_test() as instance:
        run = lambda sel, key=None: dg.materialize([*defs.assets, *defs.asset_checks], selection=sel, partition_key=key,  # noqa: E731
                                                   instance=instance, resources=defs.resources)
        r = run([dg.AssetKey("parameters")])
        assert _evaluations(r) == {("parameters", "file_integrity"): True}
        r = run(shard_assets, "shard-0000")
        assert _evaluations(r) == {(k.to_user_string(), "file_integrity"): True for k in shard_assets}

        target = paths.shard("features_summary", 0)
        original = hashlib.sha256(target.read_bytes()).hexdigest()
        with h5py.File(target, "r") as f:  # flip bytes inside the first compressed chunk of a dataset
            chunked: list[str] = []
            f.visititems(lambda n, o: chunked.append(n) if isinstance(o, h5py.Dataset) and o.chunks else None)
            name = chunked[0]
            offset = f[name].id.get_chunk_info(0).byte_offset
        data = bytearray(target.read_bytes())
        data[offset + 8: offset + 16] = bytes(b ^ 0xFF for b in data[offset + 8: offset + 16])
        target.write_bytes(bytes(data))

        verify = defs.resolve_job_def("verify_files")
        r = verify.execute_in_process(instance=instance, tags={"dagster/partition": "shard-0000"}, raise_on_error=False)
        ev = _evaluations(r)
        assert ev.pop(("features/summary", "file_integrity")) is False
        assert ev and all(ev.values())  # every other file of the shard is intact
        failed = next(e for e in r.get_asset_check_evaluations() if not e.passed)
        assert name.split("/")[0] in failed.description or name in failed.description

        r = run([dg.AssetKey(["features", "summary"])], "shard-0000")
        assert _evaluations(r) == {("features/summary", "file_integrity"): True}
        assert hashlib.sha256(target.read_bytes()).hexdigest() == original
