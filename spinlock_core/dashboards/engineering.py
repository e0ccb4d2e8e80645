"""Engineering dashboard: how the tokenizer is built and how well it trained.

Panels: architecture schematic (families -> encoders -> z-scored columns -> categories -> 3-level
residual VQ per category -> shared decoder, with the checkpoint's real counts and sizes), training
curves (``training_history.json``), validation utilization per category and level, per-category
validation reconstruction error (recomputed from the checkpoint on the validation split of the
dataset when one is given; otherwise the per-family numbers of ``metrics.json``, said so in the
panel) and a metrics table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.tokenizer import NUM_LEVELS
from .figures import (
    DashboardResult,
    category_colors,
    family_colors,
    heatmap,
    new_figure,
    note_panel,
    save_figure,
    table_panel,
    validate_dpi,
)
from ..tokenizer.inference import level_reconstructions
from .loading import DashboardData

__all__ = ["FIGSIZE", "render", "category_reconstruction_error", "utilization_matrix"]

FIGSIZE = (20.0, 13.0)


def category_reconstruction_error(x: np.ndarray, reconstructions, assignment) -> np.ndarray:
    """``[L, C]`` mean squared error over the columns of each category, for each reconstruction
    in ``reconstructions`` (``L`` arrays ``[N, F]``, e.g. from levels 0, 0-1, 0-2).

    Raises:
        ValueError: shapes disagree, or ``assignment [F]`` is not integer labels ``0..C-1``.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(assignment)
    if x.ndim != 2 or a.shape != (x.shape[1],) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"x must be [N, F] and assignment [F] integer labels, got {x.shape} and {a.shape} {a.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x has no rows")
    c = int(a.max()) + 1
    out = np.empty((len(reconstructions), c))
    for lv, r in enumerate(reconstructions):
        r = np.asarray(r, dtype=np.float64)
        if r.shape != x.shape:
            raise ValueError(f"reconstruction {lv} has shape {r.shape}, expected {x.shape}")
        sq = (x - r) ** 2
        out[lv] = [sq[:, a == k].mean() for k in range(c)]
    return out


def utilization_matrix(metrics: dict, num_categories: int, split: str = "val") -> np.ndarray:
    """``[C, 3]`` utilization of every codebook from ``metrics["codebooks"]`` (``split``: val or train)."""
    m = np.full((num_categories, NUM_LEVELS), np.nan)
    for b in metrics.get("codebooks", []):
        m[b["category"], b["level"]] = b[f"utilization_{split}"]
    return m


# ----------------------------------------------------------------------------- panels


def _box(ax, x, y, w, h, text, color, fontsize):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.003", facecolor=color, edgecolor="#444444",
                                linewidth=0.6))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, x0, y0, x1, y1, lw=0.6, alpha=0.6):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle="-|>", lw=lw, color="#555555", alpha=alpha, shrinkA=0, shrinkB=0,
                                mutation_scale=6))


def _schematic(ax, tok, metrics: dict) -> dict:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    pipe, model = tok.pipeline, tok.model
    kw = model.init_kwargs
    fams = pipe.families
    c = model.num_categories
    sizes = tok.categories.sizes
    fcol = family_colors([s.name for s in fams])
    ccol = category_colors(c)
    kept_cols = {s.name: sum(f == s.name for f in pipe.column_family) for s in fams}
    n_params = int(sum(p.numel() for p in model.parameters()))
    total_codes = int(sum(model.token_sizes))
    top, bottom = 0.9, 0.03
    # families and their encoders
    fh = min(0.16, (top - bottom) / len(fams) * 0.75)
    fy = np.linspace(top - fh, bottom, len(fams)) if len(fams) > 1 else np.array([(top + bottom - fh) / 2])
    fs = 8 if len(fams) <= 4 else 7
    for s, y in zip(fams, fy):
        kept = sum(s.cleaning.kept)
        _box(ax, 0.005, y, 0.115, fh, f"{s.name}\n{len(s.cleaning.names)} raw -> {kept} cleaned", fcol[s.name], fs)
        states = "" if s.states is None else (f"\nstates {s.states[0]} to {'T' if s.states[1] is None else s.states[1]}"
                                              f", stride {s.states[2]}")
        enc = s.encoder_name + (" (pre-trained, frozen)" if s.pretrain is not None else "")
        _box(ax, 0.145, y, 0.15, fh, f"{enc}{states}\n-> {len(s.output_names)} out, {kept_cols[s.name]} kept", "#f4f4f4", fs)
        _arrow(ax, 0.12, y + fh / 2, 0.145, y + fh / 2)
    # concatenation and z-score
    zy, zh = 0.3, 0.4
    _box(ax, 0.325, zy, 0.1, zh, f"concat +\nz-score\n\nF = {pipe.num_features}\ncolumns\n({len(pipe.dropped)} constant\ndropped)",
         "#e8eef7", 8)
    for y in fy:
        _arrow(ax, 0.295, y + fh / 2, 0.325, zy + zh / 2)
    # categories, their encoders and residual quantizers
    ch = (top - bottom) / c * 0.78
    cy = np.linspace(top - ch, bottom, c) if c > 1 else np.array([(top + bottom - ch) / 2])
    cfs = float(np.clip(150 / c, 5, 8))
    h, d = kw["hidden_dim"], kw["embedding_dim"]
    for k, y in enumerate(cy):
        ks = model.codebook_sizes[k]
        light = tuple(0.5 + 0.5 * v for v in ccol[k][:3])  # the category colour, lightened for the text
        _box(ax, 0.46, y, 0.16, ch, f"category {k}: {sizes[k]} columns, MLP {sizes[k]}->{h}->{d}", light, cfs)
        _box(ax, 0.655, y, 0.15, ch, f"RVQ K = {ks[0]} / {ks[1]} / {ks[2]}", "#fff4dc", cfs)
        _arrow(ax, 0.425, zy + zh / 2, 0.46, y + ch / 2, lw=0.4, alpha=0.4)
        _arrow(ax, 0.62, y + ch / 2, 0.655, y + ch / 2, lw=0.5)
        _arrow(ax, 0.805, y + ch / 2, 0.845, 0.5, lw=0.4, alpha=0.4)
    hidden = kw["decoder_hidden_dims"]
    _box(ax, 0.845, 0.28, 0.15, 0.44,
         f"shared decoder\n{c} x {d} = {c * d}\n-> {' -> '.join(str(x) for x in hidden) or '(linear)'}\n-> F = {pipe.num_features}"
         f"\n\n{n_params:,} parameters", "#e3f1e3", 8)
    ax.set_title(f"architecture: {len(fams)} families -> {pipe.num_features} columns -> {c} categories x {NUM_LEVELS} "
                 f"levels ({total_codes} codes) -> shared decoder", fontsize=12, loc="left")
    return {"parameters": n_params, "total_codes": total_codes}


def _curves(ax_loss, ax_q, history: dict | None, metrics: dict) -> int:
    rounds = (history or {}).get("vqvae") or []
    if not rounds:
        note_panel(ax_loss, "no validation rounds in training_history.json", "training loss")
        note_panel(ax_q, "no validation rounds in training_history.json", "validation quality")
        return 0
    step = np.array([r["step"] for r in rounds])
    for key, style in (("train_loss", "-"), ("val_loss", "-"), ("train_reconstruction", "--")):
        v = np.array([r.get(key, np.nan) for r in rounds], dtype=float)
        if np.isfinite(v).any():
            ax_loss.plot(step, v, style, marker=".", label=key.replace("_", " "))
    vals = np.array([r.get(k, np.nan) for r in rounds for k in ("train_loss", "val_loss")], dtype=float)
    if np.all(vals[np.isfinite(vals)] > 0):
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_title("training curves: loss", fontsize=11)
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    for key in ("val_quality", "val_utilization"):
        v = np.array([r.get(key, np.nan) for r in rounds], dtype=float)
        ax_q.plot(step, v, marker=".", label=key.replace("_", " "))
    th = metrics.get("thresholds") or {}
    for key, color in (("min_val_quality", "C0"), ("min_val_utilization", "C1")):
        if th.get(key):
            ax_q.axhline(th[key], color=color, ls=":", lw=1, label=key.replace("_", " "))
    best = (metrics.get("training") or {}).get("best_step")
    if best is not None:
        ax_q.axvline(best, color="#888888", ls="--", lw=0.8, label=f"best step {best}")
    ax_q.set_xlabel("optimizer step")
    ax_q.set_title("validation quality and utilization", fontsize=11)
    ax_q.legend(fontsize=8)
    ax_q.grid(alpha=0.3)
    return len(rounds)


def _fmt(v, spec=".4f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def render(data: DashboardData, out_path: Path | str, *, dpi: float = 100) -> DashboardResult:
    """Draw the engineering dashboard of ``data`` (a checkpoint, optionally with its dataset) to
    ``out_path``.

    Raises:
        ValueError: no checkpoint in ``data``; ``dpi`` out of range.
    """
    dpi = validate_dpi(dpi)
    if data.tokenizer is None:
        raise ValueError("the engineering dashboard needs a tokenizer checkpoint")
    tok, m = data.tokenizer, data.metrics or {}
    c = tok.num_categories
    fig = new_figure(FIGSIZE, dpi)
    gs = fig.add_gridspec(3, 4, height_ratios=[1.25, 1, 1], width_ratios=[1, 1, 0.7, 0.9], hspace=0.42, wspace=0.3,
                          left=0.04, right=0.985, top=0.95, bottom=0.05)
    numbers: dict[str, float | int] = {}
    numbers.update(_schematic(fig.add_subplot(gs[0, :]), tok, m))
    numbers["validation_rounds"] = _curves(fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1]), data.history, m)
    # utilization heatmap
    util = utilization_matrix(m, c)
    ax = fig.add_subplot(gs[1:, 2])
    heatmap(ax, util, xlabels=[f"L{lv}" for lv in range(NUM_LEVELS)], ylabels=[f"cat {k}" for k in range(c)],
            vmin=0, vmax=1, annotate="{:.0%}" if c <= 30 else None, fontsize=8 if c <= 15 else 6, label="utilization")
    ax.set_title("validation utilization\n(distinct codes / K)", fontsize=11)
    # per-category reconstruction error
    ax = fig.add_subplot(gs[2, 0:2])
    arrays: dict[str, np.ndarray] = {"utilization": util}
    mi = data.model_input
    if mi is not None and mi.val_mask.sum() > 0:
        recs = level_reconstructions(tok.model, mi.x_val)
        err = category_reconstruction_error(mi.x_val, recs, tok.categories.assignment)
        arrays["category_mse"] = err
        width = 0.8 / NUM_LEVELS
        for lv in range(NUM_LEVELS):
            ax.bar(np.arange(c) + (lv - 1) * width, err[lv], width,
                   label=f"levels 0-{lv}" if lv else "level 0", color=f"C{lv}", alpha=0.85)
        total = float(np.mean((mi.x_val.astype(np.float64) - recs[-1]) ** 2))
        ax.axhline(total, color="k", ls="--", lw=0.8, label=f"all columns, levels 0-2: {total:.4f}")
        ax.set_xticks(range(c), [str(k) for k in range(c)], fontsize=8)
        ax.set_xlabel("category")
        ax.set_ylabel("MSE (z-scored columns)")
        ax.set_ylim(0, 1.25 * max(float(np.nanmax(err)), total))
        ax.legend(fontsize=8, ncol=4, loc="upper right")
        ax.set_title(f"per-category validation reconstruction error: {int(mi.val_mask.sum())} validation operators of "
                     f"{Path(mi.dataset).name}, recomputed from the checkpoint", fontsize=11)
        numbers.update(val_rows=int(mi.val_mask.sum()), val_mse_recomputed=total,
                       max_category_mse=float(err[-1].max()), argmax_category_mse=int(err[-1].argmax()))
    else:
        per_fam = m.get("quality_per_family") or {}
        if per_fam:
            names = list(per_fam)
            ax.bar(range(len(names)), [1 - per_fam[k] for k in names], color="#999999")
            ax.set_xticks(range(len(names)), names)
            ax.set_ylabel("MSE (z-scored columns)")
        ax.set_title("no dataset given: per-category error needs the validation rows; shown instead is the "
                     "per-family validation MSE (1 - quality) from metrics.json", fontsize=10)
    # metrics table
    t = m.get("training") or {}
    plq = m.get("per_level_quality") or []
    rows = [
        ("validation quality", _fmt(m.get("quality"))),
        ("reconstruction error", _fmt(m.get("reconstruction_error"))),
        *[(f"quality levels 0-{i}" if i else "quality level 0", _fmt(q)) for i, q in enumerate(plq)],
        ("noise ceiling", _fmt(m.get("noise_ceiling"))),
        ("utilization val / train", f"{_fmt(m.get('utilization'), '.3f')} / {_fmt(m.get('utilization_train_mean'), '.3f')}"),
        ("AMI(IC type) mean / max", f"{_fmt(m.get('ami_ic_type'), '.3f')} / {_fmt(m.get('ami_ic_type_max'), '.3f')}"),
        ("orthogonality (mean |r|)", _fmt(m.get("orthogonality"), ".3f")),
        ("feature columns", str(m.get("feature_columns", tok.pipeline.num_features))),
        ("categories x levels", f"{c} x {NUM_LEVELS}"),
        ("codes", str(numbers["total_codes"])),
        ("parameters", f"{numbers['parameters']:,}"),
        ("train / val operators", f"{m.get('n_train', '?')} / {m.get('n_val', '?')}"),
        ("steps run / best", f"{t.get('steps_run', '?')} / {t.get('best_step', '?')}"),
        ("train seconds", _fmt(t.get("train_seconds"), ".1f")),
        ("device", str(t.get("device", "?"))),
        ("checkpoint", tok.checkpoint_id[:12]),
    ]
    table_panel(fig.add_subplot(gs[1:, 3]), rows, "metrics (validation split)", fontsize=9)
    for key, name in (("quality", "quality"), ("reconstruction_error", "reconstruction_error"),
                      ("utilization", "utilization"), ("utilization_train_mean", "utilization_train"),
                      ("noise_ceiling", "noise_ceiling")):
        if isinstance(m.get(key), (int, float)):
            numbers[name] = float(m[key])
    if np.isfinite(util).any():
        numbers["min_codebook_utilization"] = float(np.nanmin(util))
    numbers.update(num_categories=c, feature_columns=tok.pipeline.num_features)
    path, size = save_figure(fig, out_path, dpi)
    return DashboardResult("engineering", path, size, numbers, arrays)
