"""The tokenizer stages: ``feature_matrix`` -> ``tokenizer`` (checkpoint) -> ``tokens`` (per shard).

Built only when the experiment names a tokenizer config (``tokenizer: {config: ...}``). Each asset
is config -> library call -> storage -> ``MaterializeResult``; the numerics live in
:mod:`spinlock_core.tokenizer`.
"""


import time

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.storage.paths import parse_shard_key
from spinlock_core.tokenizer.checkpoint import CheckpointError
from spinlock_core.tokenizer.data import TokenizerDataError
from spinlock_core.validation.tokenizer_checks import tokenizer_checks, tokens_checks

from ..checks import check_results, check_specs
from ..conditions import REFRESH, TOKENIZER
from ..experiment import Experiment
from ..metadata import OWNERS, tags
from ..executors import GPU_QUEUE_TAGS
from ..resources import ComputeResource, SpinlockStorage
from ..retries import RETRY, bad_input_fails_once

__all__ = ["build"]


def _training_logger(context: AssetExecutionContext, every_s: float = 10.0):
    """``progress(step, total, record)`` that logs to the run at most every ``every_s`` seconds."""
    last = [0.0]

    def progress(step: int, total: int, record: dict | None = None) -> None:
        now = time.perf_counter()
        if step == total or now - last[0] >= every_s:
            last[0] = now
            rec = record or {}
            extra = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()
                              if k in ("stage", "loss", "val_quality", "val_utilization", "lr"))
            context.log.info(f"step {step}/{total}" + (f": {extra}" if extra else ""))

    return progress


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    if cfg.tokenizer is None:
        return []
    tcfg, tpath = cfg.tokenizer.loaded, cfg.tokenizer.path
    fm_key, tok_key, tokens_key = exp.key("feature_matrix"), exp.key("tokenizer"), exp.key("tokens")
    from spinlock_core.tokenizer.train import tokenizer_code_version

    version = tokenizer_code_version(tcfg)

    @dg.asset(
        key=fm_key, deps=[exp.key("dataset")], group_name="tokenizer", automation_condition=REFRESH, kinds={"numpy", "pytorch"}, code_version=version,
        owners=OWNERS, tags=tags("tokenizer"), retry_policy=RETRY, pool="gpu", op_tags=GPU_QUEUE_TAGS,
        description="Tokenizer input (SPEC 8): every family cleaned on the training split, passed through its "
        "encoder (pre-trained and frozen where it has weights), z-scored, and grouped into Ward categories.",
    )
    def feature_matrix(context: AssetExecutionContext, storage: SpinlockStorage,
                       compute: ComputeResource) -> dg.MaterializeResult:
        from spinlock_core.tokenizer.train import prepare_tokenizer_input, save_prepared

        compute.apply_threads()
        paths = storage.paths(cfg)
        try:
            inp = prepare_tokenizer_input(paths.dataset, tcfg, device=compute.torch_device(),
                                          progress=_training_logger(context))
        except TokenizerDataError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        out = save_prepared(paths.feature_matrix, inp, tcfg)
        pipe, cats = inp.pipeline, inp.categories
        dropped = []
        for s in pipe.families:
            by = s.cleaning.dropped_by_step()
            dropped.append([s.name, len(s.cleaning.names), sum(s.cleaning.kept), *(len(by.get(k, [])) for k in
                            ("variance", "reliability", "duplicate", "linear_combination")), len(s.output_names)])
        cat_rows = [[c, len(n), ", ".join(n[:6]) + (" ..." if len(n) > 6 else "")] for c, n in enumerate(cats.category_names)]
        context.log.info(f"feature_matrix: {len(pipe.names)} columns, {cats.num_categories} categories -> {out}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(out)),
            "columns": len(pipe.names),
            "operators": int(inp.prepared.x.shape[0]),
            "n_train": int(inp.prepared.train_rows.size), "n_val": int(inp.prepared.val_rows.size),
            "num_categories": cats.num_categories,
            "orthogonality": float(cats.orthogonality),
            "silhouette_final": float(cats.silhouette_final),
            "noise_ceiling": float(pipe.reliabilities.mean()),
            "seconds": inp.seconds,
            "columns_per_family": dg.MetadataValue.md(_md_table(
                ["family", "raw", "kept", "variance", "reliability", "duplicate", "linear comb.", "encoder outputs"], dropped)),
            "categories": dg.MetadataValue.md(_md_table(["category", "columns", "first columns"], cat_rows)),
        })

    tok_specs = check_specs("tokenizer", tok_key)

    @dg.asset(
        key=tok_key, deps=[fm_key], group_name="tokenizer", automation_condition=TOKENIZER, kinds={"pytorch"}, pool="gpu", op_tags=GPU_QUEUE_TAGS, check_specs=tok_specs,
        code_version=version, owners=OWNERS, tags=tags("tokenizer"), retry_policy=RETRY,
        description="The behavioural tokenizer (SPEC 9): per-category encoders, 3-level residual VQ per category, "
        "shared decoder; the checkpoint folder with metrics.json and training_history.json.",
    )
    def tokenizer(context: AssetExecutionContext, storage: SpinlockStorage, compute: ComputeResource) -> dg.MaterializeResult:
        from spinlock_core.tokenizer.train import load_prepared, train_on_prepared

        compute.apply_threads()
        paths = storage.paths(cfg)
        try:
            inp, _ = load_prepared(paths.feature_matrix)
        except CheckpointError as e:
            raise dg.Failure(description=f"{e}; materialize feature_matrix first", allow_retries=False) from None
        with bad_input_fails_once():
            tok, m = train_on_prepared(inp, tcfg, paths.tokenizer, device=compute.torch_device(),
                                       progress=_training_logger(context), config_path=str(tpath))
        t = m["training"]
        meta = {
            "path": dg.MetadataValue.path(str(tok.folder)),
            "checkpoint_id": tok.checkpoint_id,
            "val_quality": m["quality"], "val_reconstruction_error": m["reconstruction_error"],
            "val_utilization": m["utilization"], "train_utilization": m["utilization_train_mean"],
            "noise_ceiling": m["noise_ceiling"] if m["noise_ceiling"] is not None else float("nan"),
            "orthogonality": m["orthogonality"] if m["orthogonality"] is not None else float("nan"),
            "num_categories": m["num_categories"], "feature_columns": m["feature_columns"],
            "steps_run": t["steps_run"], "best_step": t["best_step"], "train_seconds": t["train_seconds"],
            "peak_rss_mb": t["peak_rss_mb"],
            "parameters": sum(p.numel() for p in tok.model.parameters()),
            **{f"quality_levels_0_{i}" if i else "quality_level_0": q for i, q in enumerate(m["per_level_quality"])},
        }
        if m.get("ami_ic_type") is not None:
            meta["ami_ic_type"] = m["ami_ic_type"]
        context.log.info(f"tokenizer: validation quality {m['quality']:.4f}, utilization {m['utilization']:.3f}")
        return dg.MaterializeResult(metadata=meta, check_results=check_results(tokenizer_checks(m), tok_key))

    @dg.asset(
        key=tokens_key, partitions_def=exp.partitions, group_name="tokenizer", automation_condition=REFRESH, kinds={"hdf5"}, code_version=version,
        owners=OWNERS, tags=tags("tokenizer"),
        deps=[tok_key, exp.key("rollouts"), exp.key("initial_conditions"), *exp.feature_keys],
        check_specs=check_specs("tokens", tokens_key, exp.partitions),
        description="Tokens of one shard: [n, 3 x categories] int64, category-major and level-minor, with the "
        "operator indices and the checkpoint's id.",
    )
    def tokens(context: AssetExecutionContext, storage: SpinlockStorage, compute: ComputeResource) -> dg.MaterializeResult:
        from spinlock_core.tokenizer.api import Tokenizer
        from spinlock_core.tokenizer.data import FeatureFile
        from spinlock_core.tokenizer.tokens_file import write_tokens

        compute.apply_threads()
        paths = storage.paths(cfg)
        shard = parse_shard_key(context.partition_key)
        t0 = time.perf_counter()
        try:
            tok = Tokenizer.load(paths.tokenizer)
            source = FeatureFile.from_shard(paths, shard)
            toks = tok.tokenize(source)
        except (CheckpointError, TokenizerDataError) as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        reports = tokens_checks(toks, tok.codebook_sizes)
        if reports[0].passed:
            write_tokens(paths.tokens(shard), toks, tok, source.metadata(), source=str(source.path))
        seconds = time.perf_counter() - t0
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(paths.tokens(shard))) if reports[0].passed else "not written",
            "operators": int(toks.shape[0]), "token_columns": int(toks.shape[1]),
            "checkpoint_id": tok.checkpoint_id, "seconds": seconds,
            "operators_per_second": toks.shape[0] / max(seconds, 1e-9),
        }, check_results=check_results(reports, tokens_key))

    return [feature_matrix, tokenizer, tokens]
