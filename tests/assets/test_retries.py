"""Transient failures are retried; bad input fails once, with its message."""

from __future__ import annotations

import dagster as dg
import torch

from spinlock_assets import retries


def _step_events(result, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind]


def test_bad_input_is_not_retried(write_config, monkeypatch):
    import spinlock_assets.assets.simulation as simulation
    from spinlock_assets.definitions import build_definitions

    monkeypatch.setattr(simulation, "RETRY", dg.RetryPolicy(max_retries=2, delay=0))
    defs = build_definitions(write_config())
    with dg.instance_for_test() as instance:
        # no parameters file: the library's StorageError names it, and no retry is attempted
        r = dg.materialize(list(defs.assets), selection=[dg.AssetKey("rollouts")], partition_key="shard-0000",
                           instance=instance, resources=defs.resources, raise_on_error=False)
    assert not r.success
    assert not _step_events(r, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    failure = _step_events(r, dg.DagsterEventType.STEP_FAILURE)[0]
    assert "StorageError: " in failure.event_specific_data.error.message
    assert "parameters.h5: file not found" in failure.event_specific_data.error.message


def test_a_transient_device_failure_is_retried(write_config, monkeypatch):
    import spinlock_assets.assets.simulation as simulation
    from spinlock_assets.definitions import build_definitions

    monkeypatch.setattr(simulation, "RETRY", dg.RetryPolicy(max_retries=2, delay=0))
    real, calls = simulation.simulate_shard, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "simulate_shard", flaky)
    defs = build_definitions(write_config())
    assets = list(defs.assets)
    with dg.instance_for_test() as instance:
        run = lambda sel, pk=None: dg.materialize(assets, selection=sel, partition_key=pk, instance=instance,  # noqa: E731
                                                  resources=defs.resources, raise_on_error=False)
        assert run([dg.AssetKey("parameters")]).success
        assert run([dg.AssetKey("initial_conditions")], "shard-0000").success
        r = run([dg.AssetKey("rollouts")], "shard-0000")
    assert r.success and len(calls) == 2
    assert len(_step_events(r, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1


def test_policy_and_bad_input_types():
    assert retries.RETRY.max_retries == 2 and retries.RETRY.delay > 0
    from spinlock_core.storage.shards import StorageError

    try:
        with retries.bad_input_fails_once():
            raise StorageError("x.h5: file not found")
    except dg.Failure as e:
        assert e.allow_retries is False and e.description == "StorageError: x.h5: file not found"
