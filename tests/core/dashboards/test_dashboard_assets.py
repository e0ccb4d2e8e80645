"""The ``dashboards/*`` Dagster assets materialize in process from the files the upstream assets
write (dataset, tokenizer checkpoint, per-shard tokens), with an inline preview and numeric
key numbers in their metadata."""

from __future__ import annotations

import base64
import io
import shutil

import dagster as dg
import numpy as np
import pytest
import yaml
from PIL import Image

from spinlock_core.config import load_experiment
from spinlock_core.config.tokenizer import TokenizerConfig
from spinlock_core.storage.paths import ExperimentPaths
from spinlock_core.tokenizer.data import FeatureFile
from spinlock_core.tokenizer.tokens_file import write_tokens
from spinlock_core.tokenizer.train import train_tokenizer
from tests.conftest import TINY_TOKENIZER, build_dataset, tiny_dict

OVERRIDES = {"sampling.total_samples": 96, "dataset.storage.shard_size": 32, "sampling.batch_size": 32}
NAMES = ("dataset", "engineering", "topological", "semantic", "tokens")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A Spinlock home whose experiment (the tiny config with a tokenizer) has its dataset,
    checkpoint and every shard's tokens where the upstream assets would have written them."""
    root = tmp_path_factory.mktemp("dash_assets")
    built = build_dataset(root, **OVERRIDES)
    tok_yaml = root / "tok.yaml"
    tok_yaml.write_text(yaml.safe_dump(TINY_TOKENIZER))
    exp_yaml = root / "exp.yaml"
    exp_yaml.write_text(yaml.safe_dump({**tiny_dict(**OVERRIDES), "tokenizer": {"config": str(tok_yaml)}}))
    cfg = load_experiment(exp_yaml)
    paths = ExperimentPaths.for_config(cfg, root / "home2")
    paths.dataset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(built.dataset, paths.dataset)
    tok, _ = train_tokenizer(paths.dataset, TokenizerConfig.model_validate(TINY_TOKENIZER), paths.tokenizer)
    source = FeatureFile(paths.dataset)
    toks, meta = tok.tokenize(source), source.metadata()
    for s in range(cfg.num_shards):
        sl = slice(*cfg.shard_range(s))
        paths.tokens(s).parent.mkdir(parents=True, exist_ok=True)
        write_tokens(paths.tokens(s), toks[sl], tok, {k: v[sl] for k, v in meta.items()}, source=str(paths.dataset))
    return exp_yaml, cfg, paths


def test_dashboard_assets_materialize_with_previews_and_numbers(home, tmp_path):
    from spinlock_assets.assets.dashboards import build
    from spinlock_assets.experiment import Experiment
    from spinlock_assets.resources import ComputeResource, SpinlockStorage

    exp_yaml, cfg, paths = home
    assets = build(Experiment(cfg, exp_yaml))
    keys = sorted(k.to_user_string() for a in assets for k in a.keys)
    assert keys == sorted(f"dashboards/{n}" for n in NAMES)
    assert {a.group_names_by_key[k] for a in assets for k in a.keys} == {"dashboards"}
    assert all(a.descriptions_by_key[k] for a in assets for k in a.keys)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize(assets, resources={"storage": SpinlockStorage(home=str(paths.home)), "compute": ComputeResource()},
                                instance=instance)
        assert result.success
        for name in NAMES:
            key = dg.AssetKey(["dashboards", name])
            meta = instance.get_latest_materialization_event(key).asset_materialization.metadata
            png = paths.dashboards / f"{name}.png"
            assert png.exists() and meta["path"].value == str(png)
            md = meta["preview"]
            assert isinstance(md, dg.MarkdownMetadataValue) and md.value.startswith(f"![{name}](data:image/png;base64,")
            thumb = Image.open(io.BytesIO(base64.b64decode(md.value.split(",", 1)[1].rstrip(")"))))
            assert thumb.format == "PNG" and thumb.width == 320
            numeric = {k: v.value for k, v in meta.items()
                       if isinstance(v, (dg.FloatMetadataValue, dg.IntMetadataValue))}
            assert {"width_px", "height_px"} <= set(numeric) and len(numeric) >= 6, name
            assert all(np.isfinite(v) for v in numeric.values())
        num = lambda n, k: instance.get_latest_materialization_event(
            dg.AssetKey(["dashboards", n])).asset_materialization.metadata[k].value
        assert num("dataset", "operators") == 96 and num("tokens", "operators") == 96
        assert isinstance(num("engineering", "quality"), float) and num("engineering", "val_rows") >= 1
        assert isinstance(num("topological", "mean_cosine"), float)
        assert isinstance(num("semantic", "mean_abs_correlation"), float)


def test_without_tokenizer_only_the_dataset_dashboard(write_config):
    from spinlock_assets.assets.dashboards import build
    from spinlock_assets.experiment import Experiment

    p = write_config()
    assets = build(Experiment(load_experiment(p), p))
    assert [k.to_user_string() for a in assets for k in a.keys] == ["dashboards/dataset"]
    assert [k.to_user_string() for a in assets for k in a.dependency_keys] == ["dataset"]


def test_missing_tokens_fail_the_tokens_dashboard(home, tmp_path):
    from spinlock_assets.assets.dashboards import build
    from spinlock_assets.experiment import Experiment
    from spinlock_assets.resources import ComputeResource, SpinlockStorage

    exp_yaml, cfg, paths = home
    moved = paths.tokens(1).with_suffix(".bak")
    paths.tokens(1).rename(moved)
    try:
        assets = build(Experiment(cfg, exp_yaml))
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            r = dg.materialize(assets, selection=[dg.AssetKey(["dashboards", "tokens"])], instance=instance,
                               resources={"storage": SpinlockStorage(home=str(paths.home)), "compute": ComputeResource()}, raise_on_error=False)
        assert not r.success
        failure = next(e for e in r.all_events if e.is_step_failure).step_failure_data.user_failure_data
        assert "tokens missing for 1 of 3 shards (shard-0001.h5)" in failure.description
    finally:
        moved.rename(paths.tokens(1))
