"""Topological dashboard: the geometry of the codebooks.

Panels: a t-SNE embedding of every codebook vector (L2-normalised first, so that the smaller norm
of the residual levels does not make them cluster by themselves), coloured by category and shaped
by level; the cosine similarity between codebook centroids (centroid = mean of one category-level
codebook's vectors, rows category-major: row ``3 c + l``); statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.tokenizer import NUM_LEVELS
from .figures import (
    LEVEL_MARKERS,
    DashboardResult,
    category_colors,
    heatmap,
    new_figure,
    note_panel,
    save_figure,
    text_panel,
    validate_dpi,
)
from .loading import DashboardData

__all__ = ["FIGSIZE", "TSNE_SEED", "render", "codebook_vectors", "centroid_cosine", "tsne_embedding"]

FIGSIZE = (20.0, 9.0)
TSNE_SEED = 0


def codebook_vectors(model) -> list[tuple[int, int, np.ndarray]]:
    """``(category, level, vectors [K, D] float64)`` of every codebook of a
    :class:`~spinlock_core.tokenizer.model.CategoricalVQVAE`, category-major, level-minor: the
    codes ``rvq.layers[l].codebook`` that tokens index.

    Raises:
        ValueError: a model built without quantizers.
    """
    if not getattr(model, "quantize", True):
        raise ValueError("the model was built with quantize=False: it has no codebooks")
    out = []
    for c, cat in enumerate(model.categories):
        for lv, vq in enumerate(cat.rvq.layers):
            out.append((c, lv, vq.codebook.detach().cpu().double().numpy().reshape(-1, model.embedding_dim)))
    return out


def centroid_cosine(codebooks) -> np.ndarray:
    """``[B, B]`` cosine similarity between the centroids (mean vector) of the ``B`` codebooks
    ``[(category, level, vectors [K, D]), ...]`` in the order given; 0 against a zero centroid."""
    cent = np.stack([np.asarray(v, dtype=np.float64).mean(axis=0) for _, _, v in codebooks])
    norm = np.linalg.norm(cent, axis=1)
    u = np.divide(cent, norm[:, None], out=np.zeros_like(cent), where=norm[:, None] > 0)
    return np.clip(u @ u.T, -1.0, 1.0)


def tsne_embedding(vectors: np.ndarray, seed: int = TSNE_SEED) -> tuple[np.ndarray, float, float]:
    """``(points [n, 2], perplexity, KL divergence)`` of the rows of ``vectors [n, D]`` after L2
    normalisation; perplexity ``min(30, (n - 1) / 3)``, PCA initialisation, ``random_state=seed``.

    Raises:
        ValueError: fewer than 5 vectors, or all of them equal after normalisation (e.g. codebooks
            never initialised): there is nothing to embed.
    """
    from sklearn.manifold import TSNE

    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 vectors [n, D], got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("codebook vectors hold non-finite values")
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    u = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    if np.ptp(u, axis=0).max() < 1e-12:
        raise ValueError("all codebook vectors are equal after L2 normalisation: nothing to embed")
    perplexity = float(min(30.0, (v.shape[0] - 1) / 3.0))
    ts = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    pts = ts.fit_transform(u)
    return pts, perplexity, float(ts.kl_divergence_)


def _off_diagonal(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(m.shape[0], dtype=bool)]


def render(data: DashboardData, out_path: Path | str, *, dpi: float = 100, seed: int = TSNE_SEED) -> DashboardResult:
    """Draw the topological dashboard of ``data``'s checkpoint to ``out_path``.

    Raises:
        ValueError: no checkpoint in ``data``; ``dpi`` out of range.
    """
    dpi = validate_dpi(dpi)
    if data.tokenizer is None:
        raise ValueError("the topological dashboard needs a tokenizer checkpoint")
    model, m = data.tokenizer.model, data.metrics or {}
    books = codebook_vectors(model)
    c = model.num_categories
    colors = category_colors(c)
    fig = new_figure(FIGSIZE, dpi)
    gs = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.0, 0.5], wspace=0.15, left=0.02, right=0.99, top=0.9,
                          bottom=0.13)
    # t-SNE of all codes
    vectors = np.concatenate([v for _, _, v in books])
    cat_of = np.concatenate([np.full(len(v), k) for k, _, v in books])
    lvl_of = np.concatenate([np.full(len(v), lv) for _, lv, v in books])
    ax = fig.add_subplot(gs[0, 0])
    try:
        pts, perplexity, kl = tsne_embedding(vectors, seed)
    except ValueError as e:  # degenerate codebooks: say so instead of drawing noise
        pts, perplexity, kl = np.full((len(vectors), 2), np.nan), float("nan"), float("nan")
        note_panel(ax, f"no t-SNE embedding: {e}", "t-SNE of the codebook vectors")
    for k in range(c):
        for lv in range(NUM_LEVELS):
            sel = (cat_of == k) & (lvl_of == lv)
            ax.scatter(pts[sel, 0], pts[sel, 1], s=14 if lv == 0 else 10, marker=LEVEL_MARKERS[lv], color=colors[k],
                       alpha=0.8, linewidths=0.3, edgecolors="k" if lv == 0 else "none")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colors[k], label=f"cat {k}") for k in range(c)]
    handles += [Line2D([], [], ls="", marker=LEVEL_MARKERS[lv], color="#555555", label=f"level {lv}")
                for lv in range(NUM_LEVELS)]
    ax.legend(handles=handles, fontsize=7, ncol=min(len(handles), 10), loc="upper center",
              bbox_to_anchor=(0.5, -0.01), frameon=False, columnspacing=0.8, handletextpad=0.2)
    ax.set_xticks([])
    ax.set_yticks([])
    if np.isfinite(kl):
        ax.set_title(f"t-SNE of all {len(vectors)} codebook vectors (L2-normalised; perplexity {perplexity:.0f}, "
                     f"seed {seed})", fontsize=11)
    # centroid cosine similarity
    cos = centroid_cosine(books)
    ax = fig.add_subplot(gs[0, 1])
    labels = [f"c{k}L{lv}" for k, lv, _ in books]
    many = len(books) > 48
    heatmap(ax, cos, xlabels=None if many else labels, ylabels=None if many else labels, cmap="RdBu_r", vmin=-1,
            vmax=1, annotate="{:.2f}" if len(books) <= 15 else None, fontsize=7, label="cosine similarity")
    if many:
        ticks = np.arange(c) * NUM_LEVELS + 1
        ax.set_xticks(ticks, [f"c{k}" for k in range(c)], fontsize=6, rotation=90)
        ax.set_yticks(ticks, [f"c{k}" for k in range(c)], fontsize=6)
    for k in range(1, c):
        ax.axhline(k * NUM_LEVELS - 0.5, color="k", lw=0.5)
        ax.axvline(k * NUM_LEVELS - 0.5, color="k", lw=0.5)
    ax.set_title("cosine similarity of codebook centroids\n(rows: category-major, level-minor)", fontsize=11)
    # statistics
    off = _off_diagonal(cos)
    cat_idx = np.array([k for k, _, _ in books])
    lvl_idx = np.array([lv for _, lv, _ in books])
    same_cat = (cat_idx[:, None] == cat_idx[None, :]) & ~np.eye(len(books), dtype=bool)
    same_lvl_other_cat = (lvl_idx[:, None] == lvl_idx[None, :]) & (cat_idx[:, None] != cat_idx[None, :])
    sizes = [len(v) for _, _, v in books]
    used = [round(b["utilization_val"] * b["codebook_size"]) for b in m.get("codebooks", [])]
    numbers: dict[str, float | int] = {
        "total_codes": int(sum(sizes)), "codebooks": len(books), "embedding_dim": int(model.embedding_dim),
        "mean_cosine": float(off.mean()) if off.size else 0.0, "max_cosine": float(off.max()) if off.size else 0.0,
        "mean_abs_cosine": float(np.abs(off).mean()) if off.size else 0.0,
    }
    if np.isfinite(kl):
        numbers["tsne_kl_divergence"] = kl
    if same_cat.any():
        numbers["mean_cosine_within_category"] = float(cos[same_cat].mean())
    if same_lvl_other_cat.any():
        numbers["mean_cosine_same_level_across_categories"] = float(cos[same_lvl_other_cat].mean())
    if used:
        numbers["codes_used_val"] = int(sum(used))
    if isinstance(m.get("quality"), (int, float)):
        numbers["quality"] = float(m["quality"])
    lines = [
        f"categories          {c}",
        f"levels              {NUM_LEVELS}",
        f"codebooks           {len(books)}",
        f"codes               {numbers['total_codes']}",
        f"  per level         {', '.join(str(sum(s for s, (_, lv, _) in zip(sizes, books) if lv == L)) for L in range(NUM_LEVELS))}",
        f"codes used (val)    {numbers.get('codes_used_val', 'n/a')}",
        f"embedding dim       {numbers['embedding_dim']}",
        f"val quality         {numbers['quality']:.4f}" if "quality" in numbers else "val quality         n/a",
        "",
        "centroid cosine (off-diagonal)",
        f"  mean              {numbers['mean_cosine']:+.3f}",
        f"  mean |cos|        {numbers['mean_abs_cosine']:.3f}",
        f"  max               {numbers['max_cosine']:+.3f}",
        f"  within category   {numbers.get('mean_cosine_within_category', float('nan')):+.3f}",
        "  same level,",
        f"  other category    {numbers.get('mean_cosine_same_level_across_categories', float('nan')):+.3f}",
        "",
        f"t-SNE KL divergence {kl:.3f}" if np.isfinite(kl) else "t-SNE: not computed",
    ]
    text_panel(fig.add_subplot(gs[0, 2]), lines, "statistics", fontsize=10)
    fig.suptitle(f"codebook topology of checkpoint {data.tokenizer.checkpoint_id[:12]}", fontsize=13, x=0.03, ha="left")
    path, size = save_figure(fig, out_path, dpi)
    return DashboardResult("topological", path, size, numbers, {"centroid_cosine": cos, "tsne": pts})
