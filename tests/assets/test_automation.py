"""Declarative automation, evaluated in-process against a real sqlite instance exactly as the
daemon's automation sensor evaluates it (``dg.evaluate_automation_conditions`` with the previous
tick's cursor): changed shards are rebuilt and nothing else; consolidated assets wait until every
shard has landed; the tokenizer never retrains on an upstream update alone."""

from __future__ import annotations

import dagster as dg

KEYS = lambda *names: [dg.AssetKey(n.split("/")) for n in names]  # noqa: E731
SHARD_ASSETS = ("initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture")


def _requested(result, name: str) -> set[str | None]:
    """The partitions (``{None}`` for an unpartitioned asset) that ``result`` asks to materialize."""
    key = dg.AssetKey(name.split("/"))
    out: set[str | None] = set()
    for r in result.results:
        if r.key == key and r.true_subset.size:
            out |= set(r.true_subset.expensively_compute_partition_keys()) if r.true_subset.is_partitioned else {None}
    return out


def _run(defs, instance, names, partition=None):
    res = dg.materialize(list(defs.assets), selection=KEYS(*names), partition_key=partition, instance=instance,
                         resources=defs.resources)
    assert res.success


def test_a_config_edit_rebuilds_only_the_stages_that_read_it_and_the_dataset_waits_for_every_shard(write_config):
    from spinlock_assets.definitions import build_definitions

    defs = build_definitions(write_config())
    shards = ["shard-0000", "shard-0001", "shard-0002"]
    with dg.instance_for_test() as instance:
        _run(defs, instance, ["parameters"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        # the first build is a backfill: nothing is requested for partitions that were missing before
        assert first.total_requested == 0
        for s in shards[:2]:
            _run(defs, instance, SHARD_ASSETS, s)
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert _requested(r, "dataset") == set()  # shard-0002 still missing
        assert _requested(r, "rollouts") == set()  # up to date
        _run(defs, instance, SHARD_ASSETS, shards[2])
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert _requested(r, "dataset") == {None}  # every shard landed: one refresh
        assert all(_requested(r, n) == set() for n in SHARD_ASSETS)
        _run(defs, instance, ["dataset"])
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0  # steady state: nothing to do

        # a new divergence threshold is read by the rollouts (and the families computed inside the
        # rollout loop), not by the initial conditions or the architecture features
        edited = build_definitions(write_config("tiny.yaml", simulation__divergence_threshold=5000.0))
        r = dg.evaluate_automation_conditions(defs=edited, instance=instance, cursor=r.cursor)
        assert _requested(r, "rollouts") == set(shards)
        assert _requested(r, "features/summary") == set(shards) == _requested(r, "features/temporal")
        assert _requested(r, "initial_conditions") == set() == _requested(r, "features/architecture")
        assert _requested(r, "parameters") == set() == _requested(r, "dataset")
        # requested once: the next tick does not ask again while the rebuild is pending
        r2 = dg.evaluate_automation_conditions(defs=edited, instance=instance, cursor=r.cursor)
        assert _requested(r2, "rollouts") == set()


def test_a_new_parameter_file_rebuilds_every_shard_and_the_tokenizer_is_weekly(write_config):
    from spinlock_assets.conditions import REFRESH, SHARD, TOKENIZER
    from spinlock_assets.definitions import build_definitions

    defs = build_definitions(write_config())
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("rollouts")).automation_condition == SHARD
    assert graph.get(dg.AssetKey("dataset")).automation_condition == REFRESH
    demo = build_definitions(__import__("tests.conftest", fromlist=["ROOT"]).ROOT / "configs/experiments/demo.yaml")
    dgraph = demo.resolve_asset_graph()
    assert dgraph.get(dg.AssetKey("tokenizer")).automation_condition == TOKENIZER
    assert {dgraph.get(dg.AssetKey(k)).automation_condition for k in ("feature_matrix", "tokens")} == {REFRESH}

    with dg.instance_for_test() as instance:
        _run(defs, instance, ["parameters"])
        _run(defs, instance, SHARD_ASSETS, "shard-0000")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        # an unscrambled Sobol sample: a new parameter file; no other stage reads this config key
        reseeded = build_definitions(write_config("tiny.yaml", sampling__sobol__scramble=False))
        r = dg.evaluate_automation_conditions(defs=reseeded, instance=instance, cursor=r.cursor)
        assert _requested(r, "parameters") == {None}  # its code version (the sampling config) changed
        assert _requested(r, "rollouts") == set()  # the parameter file itself has not changed yet
        _run(reseeded, instance, ["parameters"])
        r = dg.evaluate_automation_conditions(defs=reseeded, instance=instance, cursor=r.cursor)
        # the new parameter data version makes every shard stale: all are (re)built, in one run per
        # partition (the never-built shard-0001/0002 too: their input now exists in its new form)
        assert all(_requested(r, n) == {"shard-0000", "shard-0001", "shard-0002"} for n in SHARD_ASSETS)
        assert _requested(r, "parameters") == set() == _requested(r, "dataset")
