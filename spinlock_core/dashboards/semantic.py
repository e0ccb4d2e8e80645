"""Semantic dashboard: which features make up each category.

Panels: the feature-to-category matrix grouped by family (rows features, a block per family,
columns categories), category sizes, family composition of each category, the correlation
between category centroids measured on the dataset's rows (:func:`category_correlation`; drawn
only when a dataset is given, never estimated otherwise) and the token structure.
"""

from __future__ import annotations

import math
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
    short,
    text_panel,
    validate_dpi,
)
from .loading import DashboardData

__all__ = ["FIGSIZE", "render", "category_correlation", "feature_category_matrix", "family_composition"]

FIGSIZE = (20.0, 12.0)


def _labels(assignment, n_columns: int | None = None) -> np.ndarray:
    a = np.asarray(assignment)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.size == 0 or a.min() < 0:
        raise ValueError(f"assignment must be [F] non-negative integer labels, got {a.dtype} of shape {a.shape}")
    if n_columns is not None and a.size != n_columns:
        raise ValueError(f"assignment has {a.size} entries but x has {n_columns} columns")
    return a.astype(np.int64)


def category_correlation(x, assignment) -> np.ndarray:
    """``[C, C]`` Pearson correlation across the rows of ``x [N, F]`` between category centroids.

    A centroid is the one the tokenizer's ``orthogonality`` metric uses
    (:func:`spinlock_core.tokenizer.categories.category_centroids`): the mean of the category's
    z-scored columns after sign alignment (signs of the leading eigenvector of the category's
    correlation matrix), so a category of anti-correlated columns does not average to noise. The
    mean ``|r|`` off the diagonal is therefore the ``orthogonality`` of these rows. Columns
    constant on the rows are left out; NaN for a category with no other column.

    Raises:
        ValueError: ``x`` not ``[N >= 2, F]`` finite, or ``assignment`` not ``[F]`` labels.
    """
    from ..tokenizer.categories import category_centroids

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be [N >= 2, F], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x has non-finite values")
    a = _labels(assignment, x.shape[1])
    live = x.std(axis=0) > 0
    k = int(a.max()) + 1
    cent = np.full((x.shape[0], k), np.nan)
    present = np.unique(a[live])
    if present.size:
        cent[:, present] = category_centroids(x[:, live], a[live])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.atleast_2d(np.corrcoef(cent, rowvar=False))


def feature_category_matrix(column_family, assignment, families) -> tuple[np.ndarray, np.ndarray]:
    """``(order [F], m [F, C])``: rows sorted by family (in ``families`` order), then category,
    then column; ``m[i, c]`` is the family index of row ``i`` where its column is in category
    ``c``, NaN elsewhere."""
    a = _labels(assignment)
    fam = np.asarray(column_family)
    if fam.shape != a.shape:
        raise ValueError(f"column_family has {fam.size} entries but assignment has {a.size}")
    rank = {f: i for i, f in enumerate(families)}
    order = np.array(sorted(range(a.size), key=lambda j: (rank[fam[j]], a[j], j)), dtype=np.int64)
    m = np.full((a.size, int(a.max()) + 1), np.nan)
    m[np.arange(a.size), a[order]] = [rank[f] for f in fam[order]]
    return order, m


def family_composition(column_family, assignment, families) -> np.ndarray:
    """``[C, len(families)]`` number of columns of each family in each category."""
    a = _labels(assignment)
    fam = np.asarray(column_family)
    out = np.zeros((int(a.max()) + 1, len(families)), dtype=np.int64)
    for i, f in enumerate(families):
        out[:, i] = np.bincount(a[fam == f], minlength=out.shape[0])
    return out


def _matrix_panel(ax, tok, families, fcol):
    from matplotlib.colors import ListedColormap

    pipe, a = tok.pipeline, tok.categories.assignment
    order, m = feature_category_matrix(pipe.column_family, a, families)
    cmap = ListedColormap([fcol[f] for f in families]).with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=-0.5, vmax=len(families) - 0.5, aspect="auto",
              interpolation="nearest")
    f_total, c = m.shape
    ax.set_xticks(range(c), [str(k) for k in range(c)], fontsize=7 if c <= 25 else 5)
    ax.set_xlabel("category")
    if f_total <= 70:
        ax.set_yticks(range(f_total), [short(pipe.names[j], 26) for j in order], fontsize=5.5)
    else:
        ax.set_yticks([])
    fam_sorted = np.asarray(pipe.column_family)[order]
    start = 0
    for f in families:
        n = int((fam_sorted == f).sum())
        if n == 0:
            continue
        if start:
            ax.axhline(start - 0.5, color="k", lw=0.8)
        ax.text(c - 0.4, start + n / 2 - 0.5, f" {f}\n {n} columns", va="center", ha="left", fontsize=9, color="k")
        start += n
    for k in range(1, c):
        ax.axvline(k - 0.5, color="#dddddd", lw=0.4)
    ax.set_title(f"feature -> category ({f_total} columns, a block per family)", fontsize=11)
    return m


def render(data: DashboardData, out_path: Path | str, *, dpi: float = 100) -> DashboardResult:
    """Draw the semantic dashboard of ``data``'s checkpoint (the centroid correlation from the
    dataset's non-diverged rows when ``data`` has a dataset) to ``out_path``.

    Raises:
        ValueError: no checkpoint in ``data``; ``dpi`` out of range.
    """
    dpi = validate_dpi(dpi)
    if data.tokenizer is None:
        raise ValueError("the semantic dashboard needs a tokenizer checkpoint")
    tok, m = data.tokenizer, data.metrics or {}
    pipe, cats = tok.pipeline, tok.categories
    families = [s.name for s in pipe.families]
    fcol = family_colors(families)
    c = cats.num_categories
    sizes = np.asarray(cats.sizes)
    fig = new_figure(FIGSIZE, dpi)
    gs = fig.add_gridspec(2, 3, width_ratios=[0.9, 1.0, 1.0], hspace=0.3, wspace=0.28, left=0.06, right=0.98, top=0.93,
                          bottom=0.06)
    arrays: dict[str, np.ndarray] = {}
    arrays["feature_category"] = _matrix_panel(fig.add_subplot(gs[:, 0]), tok, families, fcol)
    # category sizes
    ax = fig.add_subplot(gs[0, 1])
    ax.bar(range(c), sizes, color=category_colors(c))
    for k, s in enumerate(sizes):
        ax.text(k, s, str(s), ha="center", va="bottom", fontsize=7 if c <= 25 else 5)
    ax.set_xticks(range(c), [str(k) for k in range(c)], fontsize=7)
    ax.set_xlabel("category")
    ax.set_ylabel("columns")
    ax.set_title(f"category sizes ({pipe.num_features} columns in {c} categories)", fontsize=11)
    # family composition
    comp = family_composition(pipe.column_family, cats.assignment, families)
    arrays["family_composition"] = comp
    ax = fig.add_subplot(gs[1, 1])
    bottom = np.zeros(c)
    for i, f in enumerate(families):
        ax.bar(range(c), comp[:, i], bottom=bottom, color=fcol[f], label=f)
        bottom += comp[:, i]
    ax.set_xticks(range(c), [str(k) for k in range(c)], fontsize=7)
    ax.set_xlabel("category")
    ax.set_ylabel("columns")
    ax.legend(fontsize=8)
    ax.set_title("family composition per category", fontsize=11)
    # measured correlation between categories
    ax = fig.add_subplot(gs[0, 2])
    numbers: dict[str, float | int] = {"num_categories": c, "feature_columns": pipe.num_features,
                                       "families": len(families), "largest_category": int(sizes.max()),
                                       "smallest_category": int(sizes.min()),
                                       "mixed_family_categories": int(((comp > 0).sum(axis=1) > 1).sum())}
    mi = data.model_input
    if mi is not None and mi.x_ok.shape[0] >= 2:
        r = category_correlation(mi.x_ok, cats.assignment)
        arrays["category_correlation"] = r
        heatmap(ax, r, xlabels=range(c), ylabels=range(c), cmap="RdBu_r", vmin=-1, vmax=1,
                annotate="{:.2f}" if c <= 12 else None, fontsize=7, label="Pearson r")
        off = np.abs(r[~np.eye(c, dtype=bool)])
        off = off[np.isfinite(off)]
        if off.size:
            numbers.update(mean_abs_correlation=float(off.mean()), max_abs_correlation=float(off.max()))
        numbers["correlation_rows"] = int(mi.x_ok.shape[0])
        ax.set_title(f"correlation between category centroids, measured on {mi.x_ok.shape[0]} operators of "
                     f"{Path(mi.dataset).name}\n(centroid: mean of the category's sign-aligned z-scored columns)", fontsize=10)
    else:
        note_panel(ax, "no dataset given: the correlation between categories is measured on\nfeature rows, "
                       "so it is not drawn (see the orthogonality numbers below)",
                   "correlation between category centroids")
    # token structure
    ks = np.asarray(tok.codebook_sizes).reshape(c, NUM_LEVELS)
    bits = np.log2(ks).sum(axis=1)
    target = getattr(getattr(tok.config, "training", None), "orthogonality_target", None)
    fmt = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"
    lines = [
        f"a token sequence: {c} categories x {NUM_LEVELS} levels = {c * NUM_LEVELS} integers",
        "column 3c + l = level l (coarse to fine) of category c",
        f"codes per codebook: {int(ks.min())} to {int(ks.max())} ({int(ks.sum())} in all)",
        f"bits per category: {bits.min():.1f} to {bits.max():.1f} ({bits.sum():.1f} per operator)",
        "",
        "orthogonality (mean |r| between categories):",
        f"  this panel, every dataset row:  {fmt(numbers.get('mean_abs_correlation'))}",
        f"  metrics.json, validation:       {fmt(m.get('orthogonality'))}",
        f"  metrics.json, training:         {fmt(m.get('category_orthogonality_train'))}",
        f"  target:                         {fmt(target)}",
        "",
        "largest categories:",
        *[f"  cat {k}: {sizes[k]} columns, " + ", ".join(f"{families[i]} {comp[k, i]}" for i in np.flatnonzero(comp[k]))
          for k in np.argsort(-sizes, kind="stable")[:6]],
    ]
    text_panel(fig.add_subplot(gs[1, 2]), lines, "token structure", fontsize=9)
    numbers["bits_per_operator"] = float(bits.sum())
    fig.suptitle(f"semantic structure of checkpoint {tok.checkpoint_id[:12]}", fontsize=13, x=0.06, ha="left")
    path, size = save_figure(fig, out_path, dpi)
    return DashboardResult("semantic", path, size, numbers, arrays)
