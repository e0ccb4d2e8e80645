"""``dashboards/*``: the PNG dashboards (SPEC 10), one asset per dashboard, in group ``dashboards``.

``dashboards/dataset`` always; ``dashboards/engineering``, ``dashboards/topological``,
``dashboards/semantic`` and ``dashboards/tokens`` when the experiment names a tokenizer. Each
writes ``<experiment>/dashboards/<name>.png`` with :mod:`spinlock_core.dashboards` and reports a
small inline preview (a base64 PNG inside Markdown: Dagster has no image metadata type), the
file's path and the dashboard's key numbers as numeric metadata, so they plot across
materializations.
"""

import math

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.dashboards import (
    DashboardData,
    DashboardInputError,
    render_one,
    thumbnail_data_uri,
)

from ..conditions import REFRESH
from ..experiment import Experiment
from ..metadata import OWNERS, file_metadata, tags
from ..resources import ComputeResource, SpinlockStorage

__all__ = ["build", "dashboard_metadata", "DESCRIPTIONS"]

DESCRIPTIONS = {
    "dataset": "Dataset dashboard PNG: IC gallery per type, re-simulated rollout frames, sampled parameter "
               "distributions, IC-type and policy balance against the config, and feature distributions per family.",
    "engineering": "Engineering dashboard PNG: architecture schematic with the checkpoint's sizes, training curves, "
                   "validation utilization per category and level, per-category validation error and a metrics table.",
    "topological": "Topological dashboard PNG: t-SNE of every codebook vector by category and level, cosine "
                   "similarity of the codebook centroids, and statistics.",
    "semantic": "Semantic dashboard PNG: feature-to-category matrix by family, category sizes and family "
                "composition, and the correlation between category centroids measured on the dataset.",
    "tokens": "Tokens dashboard PNG: code frequency of every codebook and how level-0 tokens split by IC type and "
              "update policy (AMI and contingency), from every shard's tokens file.",
}


def dashboard_metadata(result) -> dict:
    """Materialization metadata of a rendered :class:`~spinlock_core.dashboards.DashboardResult`:
    ``preview`` (Markdown with a 320 px thumbnail), ``path``, ``size_mb``, the pixel size and every
    finite key number (int or float)."""
    meta = {
        "preview": dg.MetadataValue.md(f"![{result.name}]({thumbnail_data_uri(result.path, width=320)})"),
        **file_metadata(result.path),
        "width_px": int(result.size[0]),
        "height_px": int(result.size[1]),
    }
    for k, v in result.numbers.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            meta[k] = dg.MetadataValue.int(v)
        elif isinstance(v, float) and math.isfinite(v):
            meta[k] = dg.MetadataValue.float(v)
    return meta


def _dashboard_asset(exp: Experiment, name: str, deps: list, load):
    """One dashboard asset; ``load(paths) -> DashboardData`` reads its inputs."""
    key = exp.key(f"dashboards/{name}")

    @dg.asset(
        key=key, deps=deps, group_name="dashboards", kinds={"matplotlib"}, owners=OWNERS, automation_condition=REFRESH,
        tags=tags("dashboards", dashboard=name), description=DESCRIPTIONS[name],
    )
    def _asset(context: AssetExecutionContext, storage: SpinlockStorage, compute: ComputeResource) -> dg.MaterializeResult:
        compute.apply_threads()
        paths = storage.paths(exp.cfg)
        try:
            data = load(paths)
            result = render_one(name, data, paths.dashboards)
        except DashboardInputError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        context.log.info(f"dashboards/{name}: {result.path} ({result.size[0]}x{result.size[1]} px)")
        return dg.MaterializeResult(metadata=dashboard_metadata(result))

    return _asset


def build(exp: Experiment) -> list:
    """The dashboard assets of ``exp`` (module doc)."""
    cfg = exp.cfg
    assets = [_dashboard_asset(exp, "dataset", [exp.key("dataset")], lambda p: DashboardData.from_dataset(p.dataset))]
    if cfg.tokenizer is None:
        return assets

    def with_dataset(p):
        return DashboardData.from_checkpoint(p.tokenizer, dataset=p.dataset)

    def with_tokens(p):
        files = [p.tokens(s) for s in range(cfg.num_shards)]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise DashboardInputError(f"tokens missing for {len(missing)} of {len(files)} shards ({', '.join(missing[:5])}"
                                      f"{' ...' if len(missing) > 5 else ''}): materialize tokens for every partition")
        return DashboardData.from_checkpoint(p.tokenizer, tokens=files)

    tok = exp.key("tokenizer")
    assets += [
        _dashboard_asset(exp, "engineering", [tok, exp.key("dataset")], with_dataset),
        _dashboard_asset(exp, "topological", [tok], lambda p: DashboardData.from_checkpoint(p.tokenizer)),
        _dashboard_asset(exp, "semantic", [tok, exp.key("dataset")], with_dataset),
        _dashboard_asset(exp, "tokens", [exp.key("tokens")], with_tokens),
    ]
    return assets
