"""Tokens dashboard: how the codes are used, and how they split by IC type and update policy.

Panels: the frequency of every code of every codebook (a heatmap, codebooks x codes; grey where
a codebook has no such code), utilization and perplexity per codebook, the adjusted mutual
information of each category's level-0 code with the IC type and with the update policy (lower is
better for the IC type: tokens should describe the operator, not the probe), and the level-0 code
x label contingency of the categories that depend most on the IC type and on the policy.
Diverged operators are left out, as in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.tokenizer import NUM_LEVELS
from ..tokenizer.metrics import (
    level0_ami_per_category,
    perplexity_per_codebook,
    utilization_per_codebook,
)
from .figures import (
    DashboardResult,
    heatmap,
    new_figure,
    note_panel,
    save_figure,
    short,
    validate_dpi,
)
from .loading import DashboardData

__all__ = ["FIGSIZE", "render", "token_frequencies", "level0_ami", "contingency"]

FIGSIZE = (20.0, 12.0)


def token_frequencies(tokens, sizes) -> np.ndarray:
    """``[B, max K]`` fraction of rows of ``tokens [N, B]`` using each code of each codebook; NaN
    past a codebook's own size ``sizes [B]``.

    Raises:
        ValueError: shapes disagree, no rows, or a token outside its codebook.
    """
    t = np.asarray(tokens)
    k = np.asarray(sizes, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != k.size or t.shape[0] == 0:
        raise ValueError(f"tokens must be [N >= 1, {k.size}], got shape {t.shape}")
    if ((t < 0) | (t >= k[None, :])).any():
        raise ValueError("tokens outside their codebook")
    out = np.full((k.size, int(k.max())), np.nan)
    for j in range(k.size):
        out[j, : k[j]] = np.bincount(t[:, j], minlength=k[j]) / t.shape[0]
    return out


def level0_ami(tokens, labels) -> np.ndarray:
    """``[C]`` AMI of each category's level-0 code with ``labels [N]``; NaN when the labels take a
    single value (nothing to explain)."""
    labels = np.asarray(labels).astype(str)
    c = np.asarray(tokens).shape[1] // NUM_LEVELS
    if np.unique(labels).size < 2:
        return np.full(c, np.nan)
    return level0_ami_per_category(tokens, labels, NUM_LEVELS)


def contingency(codes, labels) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(label names [L], codes used [K'], counts [L, K'])`` of ``codes [N]`` against ``labels [N]``."""
    codes, labels = np.asarray(codes), np.asarray(labels).astype(str)
    names = sorted(set(labels))
    used = np.unique(codes)
    col = np.searchsorted(used, codes)
    counts = np.zeros((len(names), used.size), dtype=np.int64)
    for i, n in enumerate(names):
        counts[i] = np.bincount(col[labels == n], minlength=used.size)
    return names, used, counts


def _contingency_panel(ax, codes, labels, title):
    names, used, counts = contingency(codes, labels)
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    heatmap(ax, frac, xlabels=used if used.size <= 40 else None, ylabels=[short(n, 20) for n in names], cmap="magma_r",
            vmin=0, annotate=None, fontsize=7, label="row fraction")
    if used.size > 40:
        ax.set_xticks([])
    ax.set_xlabel(f"level-0 code ({used.size} used)")
    ax.set_title(title, fontsize=10)


def render(data: DashboardData, out_path: Path | str, *, dpi: float = 100) -> DashboardResult:
    """Draw the tokens dashboard of ``data`` (its tokens files, else tokens computed from its
    dataset) to ``out_path``.

    Raises:
        ValueError: no checkpoint or no tokens in ``data``; ``dpi`` out of range.
    """
    dpi = validate_dpi(dpi)
    if data.tokenizer is None:
        raise ValueError("the tokens dashboard needs a tokenizer checkpoint")
    table = data.tokens
    if table is None:
        raise ValueError("the tokens dashboard needs tokens: give a tokens file or the dataset")
    tok = data.tokenizer
    sizes = np.asarray(tok.codebook_sizes)
    ok = ~table.diverged
    t, ic, pol = table.tokens[ok], table.ic_types[ok], table.policies[ok]
    if t.shape[0] == 0:
        raise ValueError("every operator diverged: no tokens to draw")
    c = t.shape[1] // NUM_LEVELS
    freq = token_frequencies(t, sizes)
    util = utilization_per_codebook(t, sizes)
    perp = perplexity_per_codebook(t, sizes)
    ami_ic, ami_pol = level0_ami(t, ic), level0_ami(t, pol)
    fig = new_figure(FIGSIZE, dpi)
    gs = fig.add_gridspec(2, 3, width_ratios=[1.15, 1.0, 1.0], hspace=0.38, wspace=0.3, left=0.05, right=0.985,
                          top=0.92, bottom=0.07)
    # code frequencies
    ax = fig.add_subplot(gs[:, 0])
    labels = [f"c{j // NUM_LEVELS}L{j % NUM_LEVELS} (K={k})" for j, k in enumerate(sizes)]
    heatmap(ax, freq, ylabels=labels if len(labels) <= 60 else None, cmap="viridis", vmin=0, fontsize=6 if len(labels) > 24 else 8,
            label="fraction of operators")
    for k in range(1, c):
        ax.axhline(k * NUM_LEVELS - 0.5, color="white", lw=0.8)
    ax.set_xlabel("code")
    ax.set_title(f"code frequency per codebook ({t.shape[0]} operators; grey: past the codebook's size)", fontsize=10)
    # utilization and perplexity
    ax = fig.add_subplot(gs[0, 1])
    x = np.arange(sizes.size)
    ax.bar(x - 0.2, util, 0.4, label="utilization (distinct / K)", color="C0")
    ax.bar(x + 0.2, perp / sizes, 0.4, label="perplexity / K", color="C1")
    ax.set_xticks(x[1::NUM_LEVELS], [f"c{k}" for k in range(c)], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("codebook (levels 0, 1, 2 of each category)")
    ax.legend(fontsize=8)
    ax.set_title("code use per codebook", fontsize=10)
    # AMI with IC type and policy
    ax = fig.add_subplot(gs[1, 1])
    xc = np.arange(c)
    ax.bar(xc - 0.2, np.nan_to_num(ami_ic), 0.4, label="IC type", color="C3")
    ax.bar(xc + 0.2, np.nan_to_num(ami_pol), 0.4, label="update policy", color="C2")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(xc, [str(k) for k in range(c)], fontsize=7)
    ax.set_xlabel("category (level-0 code)")
    ax.set_ylabel("adjusted mutual information")
    ax.legend(fontsize=8)
    ax.set_title("how level-0 tokens split by IC type and by update policy" +
                 (" (one policy only: n/a)" if np.isnan(ami_pol).all() else ""), fontsize=10)
    # contingency of the most dependent categories
    for row, (ami, lab, what) in enumerate(((ami_ic, ic, "IC type"), (ami_pol, pol, "update policy"))):
        ax = fig.add_subplot(gs[row, 2])
        if np.isnan(ami).all():
            note_panel(ax, f"a single {what}: nothing to split", f"level-0 code x {what}")
            continue
        k = int(np.nanargmax(ami))
        _contingency_panel(ax, t[:, k * NUM_LEVELS], lab, f"category {k} (highest AMI with {what}: {ami[k]:.3f}):\n"
                                                            f"level-0 code x {what}, row fractions")
    fig.suptitle(f"tokens of checkpoint {tok.checkpoint_id[:12]} ({table.source}; {int((~ok).sum())} diverged left out)",
                 fontsize=13, x=0.05, ha="left")
    numbers: dict[str, float | int] = {
        "operators": int(t.shape[0]), "token_columns": int(t.shape[1]), "total_codes": int(sizes.sum()),
        "codes_used": int(np.sum(util * sizes).round()), "utilization": float(util.mean()),
        "min_utilization": float(util.min()), "mean_perplexity": float(perp.mean()),
    }
    for name, a in (("ic_type", ami_ic), ("policy", ami_pol)):
        if np.isfinite(a).any():
            numbers[f"ami_{name}_mean"] = float(np.nanmean(a))
            numbers[f"ami_{name}_max"] = float(np.nanmax(a))
    path, size = save_figure(fig, out_path, dpi)
    return DashboardResult("tokens", path, size, numbers,
                           {"frequencies": freq, "ami_ic_type": ami_ic, "ami_policy": ami_pol})
