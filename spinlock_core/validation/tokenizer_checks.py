"""Checks of a trained tokenizer (its ``metrics.json``) and of a tokens file, as :class:`CheckReport`s."""

from __future__ import annotations

import numpy as np

from .report import CheckReport, markdown_table
from .stage_checks import _def

__all__ = ["tokenizer_checks", "tokens_checks"]


def _report(stage: str, name: str, passed: bool, description: str, **kw) -> CheckReport:
    d = _def(stage, name)
    return CheckReport(name, bool(passed), d.blocking, "ERROR" if d.blocking else "WARN", description, **kw)


def tokenizer_checks(metrics: dict) -> list[CheckReport]:
    """``quality_and_utilization`` (blocking) and ``category_report`` from a checkpoint's metrics.

    The utilization threshold only applies when the validation split has ``5 K0`` rows for every
    codebook (SPEC 9; ``utilization_threshold_applies``); a dead codebook (no code used on the
    validation split) always fails.
    """
    th = metrics["thresholds"]
    q, u = metrics["quality"], metrics["utilization"]
    applies = bool(metrics["utilization_threshold_applies"])
    dead = list(metrics.get("dead_codebooks", []))
    problems = []
    if q < th["min_val_quality"]:
        problems.append(f"validation quality {q:.4f} < {th['min_val_quality']}")
    if applies and u < th["min_val_utilization"]:
        problems.append(f"validation utilization {u:.3f} < {th['min_val_utilization']}")
    if dead:
        problems.append(f"dead codebooks (token columns) {dead}")
    desc = "; ".join(problems) or (
        f"validation quality {q:.4f}, utilization {u:.3f}" + ("" if applies else " (threshold not applied: "
                                                            "fewer than 5 K0 validation rows)"))
    quality = _report("tokenizer", "quality_and_utilization", not problems, desc,
                      values={"val_quality": q, "val_utilization": u, "train_utilization": metrics["utilization_train_mean"],
                              "dead_codebooks": len(dead), "utilization_threshold_applies": applies},
                      thresholds={"val_quality": th["min_val_quality"], "val_utilization": th["min_val_utilization"]})
    books = metrics["codebooks"]
    levels = metrics["num_levels"]
    ami = metrics.get("ami_ic_type_per_category") or [None] * metrics["num_categories"]
    rows = {}
    for c in range(metrics["num_categories"]):
        b = books[c * levels:(c + 1) * levels]
        util = " / ".join(f"{x['utilization_val']:.2f}" for x in b)
        util_t = " / ".join(f"{x['utilization_train']:.2f}" for x in b)
        sizes = " / ".join(str(x["codebook_size"]) for x in b)
        a = "n/a" if ami[c] is None else f"{ami[c]:.3f}"
        rows[f"category {c}"] = f"K {sizes} | val {util} | train {util_t} | AMI {a}"
    low = [c for c in range(metrics["num_categories"])
           if np.mean([x["utilization_val"] for x in books[c * levels:(c + 1) * levels]]) < th["min_val_utilization"]]
    cat = _report("tokenizer", "category_report", not (applies and low),
                  f"categories under the utilization threshold: {low}" if applies and low else
                  f"{metrics['num_categories']} categories; mean AMI(level 0; IC type) "
                  f"{metrics.get('ami_ic_type') if metrics.get('ami_ic_type') is not None else 'n/a'}",
                  values={"ami_ic_type_mean": metrics.get("ami_ic_type") if metrics.get("ami_ic_type") is not None else float("nan"),
                          "ami_ic_type_max": metrics.get("ami_ic_type_max") if metrics.get("ami_ic_type_max") is not None else float("nan"),
                          "categories_below_threshold": len(low)},
                  thresholds={"val_utilization": th["min_val_utilization"]},
                  tables={"per_category": markdown_table(rows, ("category", "codebook sizes | utilization val | train | AMI"))})
    return [quality, cat]


def tokens_checks(tokens: np.ndarray, codebook_sizes) -> list[CheckReport]:
    """``tokens_in_codebook``: every entry of ``tokens [N, 3 C]`` in ``[0, codebook_sizes[j])``."""
    t = np.asarray(tokens)
    k = np.asarray(codebook_sizes)
    if t.ndim != 2 or t.shape[1] != k.size:
        bad = {"shape": f"{t.shape}, expected [N, {k.size}]"}
    else:
        counts = ((t < 0) | (t >= k[None, :])).sum(0)
        bad = {f"column {j}": f"{int(c)} outside [0, {int(k[j])})" for j, c in enumerate(counts) if c}
    return [_report("tokens", "tokens_in_codebook", not bad,
                    f"{len(bad)} token columns outside their codebook" if bad else
                    f"all {t.size} tokens inside their codebooks",
                    values={"bad_columns": len(bad), "tokens": int(t.size)}, tables={"outside": markdown_table(bad, ("column", "problem"))})]
