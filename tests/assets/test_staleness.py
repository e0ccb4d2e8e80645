"""Code versions: changing a stage's version or a config key it reads marks exactly the affected
assets as out of date (Dagster's stale-status resolver over a real sqlite instance)."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleCauseCategory, StaleStatus
from dagster._core.loader import LoadingContextForTest

PARTITIONED = ("initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture")


#: the groups the fixture materializes (dashboards and the check report downstream are left out)
GROUPS = {"sampling", "generation", "features", "dataset"}


def _status(defs, instance) -> dict[str, set]:
    """``{asset: {status per partition}}`` of the assets in :data:`GROUPS`."""
    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, lambda: graph, LoadingContextForTest(instance))
    out = {}
    for key in graph.get_all_asset_keys():
        if graph.get(key).group_name not in GROUPS:
            continue
        pdef = graph.get(key).partitions_def
        pks = pdef.get_partition_keys() if pdef else [None]
        out[key.to_user_string()] = {resolver.get_status(key, pk) for pk in pks}
    return out


def _code_caused(defs, instance, asset: str) -> bool:
    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, lambda: graph, LoadingContextForTest(instance))
    key = dg.AssetKey(asset.split("/"))
    pdef = graph.get(key).partitions_def
    pks = pdef.get_partition_keys() if pdef else [None]
    causes = [c for pk in pks for c in resolver.get_stale_causes(key, pk)]
    return bool(causes) and all(c.category == StaleCauseCategory.CODE for c in causes)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """The tiny experiment (2 shards) fully materialized once; yields (config dict, instance)."""
    import yaml

    from spinlock_assets.definitions import build_definitions
    from tests.conftest import tiny_dict

    root = tmp_path_factory.mktemp("stale")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPINLOCK_HOME", str(root / "home"))
    data = tiny_dict(**{"sampling.total_samples": 16})
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    defs = build_definitions(cfg_path)
    assets = list(defs.assets)
    graph = defs.resolve_asset_graph()
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        assert dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=defs.resources).success
        for pk in ("shard-0000", "shard-0001"):
            assert dg.materialize(assets, selection=partitioned, partition_key=pk, instance=instance, resources=defs.resources).success
        assert dg.materialize(assets, selection=[dg.AssetKey("dataset")], instance=instance, resources=defs.resources).success
        yield data, instance, root
    mp.undo()


def _defs_for(root, data, name: str, **overrides):
    import yaml

    from spinlock_assets.definitions import build_definitions
    from tests.conftest import tiny_dict

    d = tiny_dict(**{"sampling.total_samples": 16, **overrides})
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return build_definitions(p)


def _stale(status: dict) -> set[str]:
    return {k for k, v in status.items() if v != {StaleStatus.FRESH}}


def test_everything_fresh_after_a_full_build(materialized):
    data, instance, root = materialized
    assert _stale(_status(_defs_for(root, data, "same"), instance)) == set()


def test_output_path_change_marks_only_dataset(materialized):
    data, instance, root = materialized
    defs = _defs_for(root, data, "out", **{"dataset.output_path": "datasets/elsewhere.h5"})
    assert _stale(_status(defs, instance)) == {"dataset"}
    assert _code_caused(defs, instance, "dataset")


def test_feature_config_key_marks_that_family_and_what_reads_it(materialized):
    data, instance, root = materialized
    defs = _defs_for(root, data, "sens", **{"features.summary.extract_operator_features": True})
    stale = _stale(_status(defs, instance))
    assert "features/summary" in stale and _code_caused(defs, instance, "features/summary")
    # siblings computed by the same op from the same rollouts are untouched
    assert not stale & {"parameters", "initial_conditions", "rollouts", "features/temporal", "features/architecture"}
    assert stale <= {"features/summary", "dataset"}


def test_family_version_bump_marks_exactly_that_family(materialized, monkeypatch):
    import spinlock_core.features.families as families

    data, instance, root = materialized
    fam = families.FAMILIES["temporal"]
    monkeypatch.setitem(families.FAMILIES, "temporal", dataclasses.replace(fam, version=fam.version + ".1"))
    defs = _defs_for(root, data, "ver")
    stale = _stale(_status(defs, instance))
    assert "features/temporal" in stale and _code_caused(defs, instance, "features/temporal")
    assert stale <= {"features/temporal", "dataset"}


def test_simulation_key_marks_rollouts_and_rollout_features_not_inputs(materialized):
    data, instance, root = materialized
    defs = _defs_for(root, data, "dt", **{"simulation.divergence_threshold": 123.0})
    stale = _stale(_status(defs, instance))
    assert {"rollouts", "features/summary", "features/temporal"} <= stale
    assert not stale & {"parameters", "initial_conditions", "features/architecture"}
