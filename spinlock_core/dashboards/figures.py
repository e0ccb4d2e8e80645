"""Figure helpers shared by the dashboards: a headless figure, saving it atomically at an exact
pixel size, colours, heatmaps and text panels.

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas: nothing goes through
pyplot's global figure manager, so rendering is thread-safe and leaves no state behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["DashboardResult", "new_figure", "save_figure", "validate_dpi", "category_colors", "family_colors",
           "heatmap", "text_panel", "note_panel", "table_panel", "LEVEL_MARKERS", "short"]

#: marker of each quantizer level (SPEC 10: shaped by level)
LEVEL_MARKERS = ("o", "s", "^")


@dataclass
class DashboardResult:
    """A rendered dashboard: the PNG, its pixel size ``(width, height)``, its key numbers (floats
    and ints, for Dagster metadata and the CLI) and the matrices its panels drew (so tests can
    compare a panel with a direct computation)."""

    name: str
    path: Path
    size: tuple[int, int]
    numbers: dict[str, float | int] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def validate_dpi(dpi) -> float:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) or not 10 <= dpi <= 600:
        raise ValueError(f"dpi must be a number in [10, 600], got {dpi!r}")
    return float(dpi)


def new_figure(figsize: tuple[float, float], dpi: float) -> Figure:
    """A white figure of ``figsize`` inches with its own Agg canvas."""
    fig = Figure(figsize=figsize, dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_path: Path | str, dpi: float) -> tuple[Path, tuple[int, int]]:
    """Write ``fig`` as a PNG of exactly ``figsize x dpi`` pixels (no tight bounding box), to a
    temporary name first, so a reader never sees half a file. Returns the path and ``(width, height)``."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor="white")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    w, h = fig.get_size_inches() * dpi
    return out, (int(round(w)), int(round(h)))


def category_colors(n: int) -> list:
    """``n`` distinct RGBA colours: tab20 up to 20, else evenly spaced on ``turbo``."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.03, 0.97, n)]


def family_colors(families) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["Set2"]
    return {f: cmap(i % 8) for i, f in enumerate(families)}


def short(name: str, width: int = 22) -> str:
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def heatmap(ax, m: np.ndarray, *, xlabels=None, ylabels=None, cmap="viridis", vmin=None, vmax=None,
            annotate: str | None = None, fontsize: float = 7, colorbar: bool = True, label: str = ""):
    """``m [R, K]`` as an image; ``annotate`` a format (``"{:.2f}"``) writes each finite value in its
    cell; NaN cells are light grey. Returns the image."""
    from matplotlib import colormaps

    cm = colormaps[cmap].with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), [str(x) for x in xlabels], fontsize=fontsize, rotation=90)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), [str(y) for y in ylabels], fontsize=fontsize)
    if annotate:
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                r, g, b, _ = cm(im.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # white text on dark cells
                ax.text(j, i, annotate.format(v), ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=fontsize)
        if label:
            cb.set_label(label, fontsize=fontsize)
    return im


def text_panel(ax, lines: list[str], title: str = "", fontsize: float = 9) -> None:
    """Monospaced lines in an axis without frame."""
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize + 2, loc="left")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=fontsize,
            transform=ax.transAxes)


def note_panel(ax, message: str, title: str = "", fontsize: float = 10) -> None:
    """A panel that says why it has no plot (e.g. no dataset was given)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_color("#bbbbbb")
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=fontsize, wrap=True, color="#555555",
            transform=ax.transAxes)


def table_panel(ax, rows: list[tuple[str, str]], title: str = "", fontsize: float = 9) -> None:
    """A two-column (name, value) table filling the axis."""
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    if not rows:
        return
    t = ax.table(cellText=[[k, v] for k, v in rows], colLabels=["metric", "value"], loc="upper center",
                 cellLoc="left", colLoc="left", colWidths=[0.58, 0.42])
    t.auto_set_font_size(False)
    t.set_fontsize(fontsize)
    t.scale(1.0, 1.25)
    for (r, _), cell in t.get_celld().items():
        if r == 0:
            cell.set_facecolor("#dde4ee")
            cell.set_text_props(weight="bold")
