"""Render every dashboard the inputs allow: ``render_all(source, out_dir) -> {name: DashboardResult}``."""

from __future__ import annotations

import logging
from pathlib import Path

from . import dataset, engineering, semantic, tokens, topological
from .figures import DashboardResult
from .loading import DashboardData

__all__ = ["DASHBOARDS", "render_all", "render_one"]

log = logging.getLogger(__name__)

#: dashboard name -> its ``render(data, out_path, *, dpi)``, in drawing order
DASHBOARDS = {
    "engineering": engineering.render,
    "topological": topological.render,
    "semantic": semantic.render,
    "tokens": tokens.render,
    "dataset": dataset.render,
}


def render_one(name: str, data: DashboardData, out_dir: Path | str, *, dpi: float = 100) -> DashboardResult:
    """Render dashboard ``name`` of ``data`` to ``out_dir/<name>.png``.

    Raises:
        ValueError: an unknown name, or inputs that do not allow that dashboard.
    """
    if name not in DASHBOARDS:
        raise ValueError(f"unknown dashboard {name!r}; known: {', '.join(DASHBOARDS)}")
    if name not in data.available():
        raise ValueError(f"the {name} dashboard needs other inputs; these allow: {', '.join(data.available()) or 'none'}")
    result = DASHBOARDS[name](data, Path(out_dir) / f"{name}.png", dpi=dpi)
    log.info("%s dashboard: %s (%dx%d px)", name, result.path, *result.size)
    return result


def render_all(source, out_dir: Path | str, dataset: Path | str | None = None, tokens=None, *,
               dpi: float = 100) -> dict[str, DashboardResult]:
    """Render every dashboard the inputs allow into ``out_dir``: a dataset alone gives the dataset
    dashboard; a checkpoint gives engineering, topological and semantic, plus tokens and dataset
    when a dataset is given (tokens from ``tokens`` files when given, else computed from the
    dataset; a checkpoint with tokens files and no dataset also gives the tokens dashboard).

    Args:
        source: a checkpoint folder, a dataset file, or a :class:`DashboardData`.

    Raises:
        DashboardInputError: ``source`` is neither a checkpoint folder nor a Spinlock dataset.
    """
    data = source if isinstance(source, DashboardData) else DashboardData.load(source, dataset=dataset, tokens=tokens)
    return {name: render_one(name, data, out_dir, dpi=dpi) for name in data.available()}
