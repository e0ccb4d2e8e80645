"""Dataset dashboard: what the operators and their probes look like.

Panels: an IC gallery (one row per IC type, channel 0), rollout frames of a few operators
re-simulated from their stored unit parameters and initial conditions (realization 0, channel 0,
a handful of time points), the distribution of every sampled parameter (decoded values), IC-type
and update-policy balance (realised fraction against the configured weight) and feature
distributions per family (z-scored, a subset of columns).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .figures import (
    DashboardResult,
    new_figure,
    note_panel,
    save_figure,
    short,
    validate_dpi,
)
from .loading import DashboardData, DatasetView

__all__ = ["FIGSIZE", "render", "balance", "zscore_columns"]

FIGSIZE = (20.0, 17.0)


def balance(labels, weights: dict[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, realised [k], configured [k])``: the fraction of ``labels [N]`` with each name
    against its configured weight; names are the configured ones, then any unexpected label
    (configured 0)."""
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    names = list(weights) + sorted(set(labels) - set(weights))
    realised = np.array([(labels == n).mean() for n in names])
    configured = np.array([float(weights.get(n, 0.0)) for n in names])
    return names, realised, configured


def zscore_columns(x) -> np.ndarray:
    """Columns of ``x [N, k]`` z-scored over their finite values (NaN kept; a constant column -> 0)."""
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():  # an all-NaN column (documented NaN) stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmean(x, axis=0) if x.size else np.zeros(x.shape[1])
        sd = np.nanstd(x, axis=0) if x.size else np.ones(x.shape[1])
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.inf)
    return (x - mu) / sd


def _section(fig, axes, title: str) -> None:
    boxes = [a.get_position() for a in axes]
    x0, y1 = min(b.x0 for b in boxes), max(b.y1 for b in boxes)
    fig.text(x0, y1 + 0.018, title, fontsize=12, ha="left", va="bottom")


def _gallery(fig, spec, d: DatasetView) -> list:
    from .loading import GALLERY_PER_TYPE

    g = d.gallery
    types = list(g)
    sub = spec.subgridspec(len(types), GALLERY_PER_TYPE, hspace=0.12, wspace=0.05)
    axes = []
    for i, t in enumerate(types):
        rows, fields = g[t]
        for j in range(GALLERY_PER_TYPE):
            ax = fig.add_subplot(sub[i, j])
            axes.append(ax)
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(rows):
                u = fields[j]
                v = float(np.abs(u).max()) or 1.0
                ax.imshow(u, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
                ax.text(0.02, 0.98, f"#{int(d.operator_index[rows[j]])}", transform=ax.transAxes, fontsize=6,
                        va="top", color="k", bbox=dict(facecolor="white", alpha=0.6, lw=0, pad=0.5))
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(short(t, 20), fontsize=8)
    _section(fig, axes, f"initial conditions by IC type (channel 0, first {GALLERY_PER_TYPE} of each)")
    return axes


def _rollouts(fig, spec, d: DatasetView) -> int:
    frames, rows, times = d.rollouts, d.rollout_rows, d.rollout_times
    sub = spec.subgridspec(max(1, len(rows)), len(times), hspace=0.12, wspace=0.05)
    axes = []
    for i, row in enumerate(rows):
        v = float(np.abs(frames[i]).max()) or 1.0  # one colour scale per operator, over time
        for j, t in enumerate(times):
            ax = fig.add_subplot(sub[i, j])
            axes.append(ax)
            ax.imshow(frames[i, j], cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {int(t)}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"#{int(d.operator_index[row])}\n{short(d.ic_types[row], 16)}\n{d.policies[row]}", fontsize=7)
    if axes:
        _section(fig, axes, f"rollouts re-simulated from stored parameters (realization 0, channel 0, "
                            f"T = {d.cfg.simulation.num_timesteps})")
    return len(rows)


def _parameters(fig, spec, d: DatasetView) -> int:
    from ..config.parameters import BooleanParam, ChoiceParam, ContinuousParam
    from ..sampling.mapping import decode_params

    space = d.cfg.parameter_space
    p = d.unit_params.shape[1]
    if p == 0:
        return 0
    nrows = -(-p // 10)
    ncols = -(-p // nrows)
    sub = spec.subgridspec(nrows, ncols, hspace=0.75, wspace=0.35)
    specs = dict(space.ordered())
    decoded = decode_params(d.unit_params, space) if space.dim == p else {}
    axes = []
    for j, name in enumerate(d.parameter_names[:p]):
        ax = fig.add_subplot(sub[j // ncols, j % ncols])
        axes.append(ax)
        s, v = specs.get(name), decoded.get(name)
        if v is None or s is None:  # not decodable with this config: the unit values
            ax.hist(d.unit_params[:, j], bins=12, range=(0, 1), color="#888888")
        elif isinstance(s, (ChoiceParam, BooleanParam)):
            choices = list(s.choices) if isinstance(s, ChoiceParam) else [False, True]
            counts = [int(sum(1 for x in v if x == c)) for c in choices]
            ax.bar(range(len(choices)), counts, color="C0")
            if isinstance(s, ChoiceParam) and len(choices) > 1:
                w = s.weights or [1 / len(choices)] * len(choices)
                ax.plot(range(len(choices)), np.asarray(w) * len(v), "k_", ms=14, mew=1.5, label="configured")
            ax.set_xticks(range(len(choices)), [short(str(c), 9) for c in choices], fontsize=6,
                          rotation=30 if len(choices) > 3 else 0)
        elif isinstance(s, ContinuousParam) and s.log_scale and s.bounds[0] > 0:
            ax.hist(v.astype(float), bins=np.geomspace(s.bounds[0], s.bounds[1], 13), color="C0")
            ax.set_xscale("log")
        else:
            vals = v.astype(float)
            if not isinstance(s, ContinuousParam):  # integers: one bar per value
                lo, hi = int(vals.min()), int(vals.max())
                ax.hist(vals, bins=np.arange(lo, hi + 2) - 0.5, color="C0", rwidth=0.85)
                ax.set_xticks(np.unique(np.linspace(lo, hi, min(hi - lo + 1, 8)).round()))
            else:
                ax.hist(vals, bins=12, range=tuple(s.bounds), color="C0")
        ax.set_title(short(name, 22), fontsize=8)
        ax.tick_params(labelsize=6)
    _section(fig, axes, f"sampled parameters ({p}, decoded; black ticks: configured choice weights)")
    return p


def _balance_panel(ax, names, realised, configured, title):
    x = np.arange(len(names))
    ax.bar(x - 0.2, realised, 0.4, label="realised", color="C0")
    ax.bar(x + 0.2, configured, 0.4, label="configured", color="#bbbbbb")
    ax.set_xticks(x, [short(n, 18) for n in names], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)


def _features(fig, spec, d: DatasetView) -> int:
    samples = d.feature_samples
    fams = list(samples)
    if not fams:
        note_panel(fig.add_subplot(spec), "this dataset holds no feature family", "feature distributions")
        return 0
    sub = spec.subgridspec(1, len(fams), wspace=0.18)
    axes = []
    for i, fam in enumerate(fams):
        names, x = samples[fam]
        ax = fig.add_subplot(sub[0, i])
        axes.append(ax)
        z = zscore_columns(x)
        cols = [np.clip(c[np.isfinite(c)], -6, 6) for c in z.T]
        if any(c.size for c in cols):
            ax.boxplot([c if c.size else [np.nan] for c in cols], vert=False, widths=0.6, showfliers=True,
                       flierprops=dict(markersize=1.5, alpha=0.4))
        ax.set_yticks(range(1, len(names) + 1), [short(n, 24) for n in names], fontsize=6)
        ax.set_xlim(-6.3, 6.3)
        ax.axvline(0, color="#999999", lw=0.5)
        ax.tick_params(axis="x", labelsize=7)
        what = "final state" if fam == "temporal" else ("mean block" if fam == "summary" else "")
        ax.set_title(f"{fam}{' (' + what + ')' if what else ''}: {len(names)} columns", fontsize=9)
    _section(fig, axes, f"feature distributions per family (z-scored, clipped to +-6; {x.shape[0]} operators)")
    return len(fams)


def render(data: DashboardData, out_path: Path | str, *, dpi: float = 100) -> DashboardResult:
    """Draw the dataset dashboard of ``data``'s dataset to ``out_path`` (re-simulates a few
    operators on the CPU).

    Raises:
        ValueError: no dataset in ``data``; ``dpi`` out of range.
    """
    from ..generation.weights import ic_type_weights, policy_weights

    dpi = validate_dpi(dpi)
    d = data.dataset
    if d is None:
        raise ValueError("the dataset dashboard needs a dataset")
    cfg = d.cfg
    fig = new_figure(FIGSIZE, dpi)
    gs = fig.add_gridspec(3, 1, height_ratios=[1.45, 0.75, 0.85], hspace=0.3, left=0.05, right=0.985, top=0.935,
                          bottom=0.06)
    top = gs[0].subgridspec(1, 2, wspace=0.08, width_ratios=[1.0, 1.35])
    _gallery(fig, top[0, 0], d)
    n_roll = _rollouts(fig, top[0, 1], d)
    n_params = _parameters(fig, gs[1], d)
    bottom = gs[2].subgridspec(1, 2, width_ratios=[1.0, 2.3], wspace=0.12)
    bal = bottom[0, 0].subgridspec(1, 2, wspace=0.35)
    ic_names, ic_real, ic_conf = balance(d.ic_types, ic_type_weights(cfg))
    pol_names, pol_real, pol_conf = balance(d.policies, policy_weights(cfg))
    ax_ic, ax_pol = fig.add_subplot(bal[0, 0]), fig.add_subplot(bal[0, 1])
    _balance_panel(ax_ic, ic_names, ic_real, ic_conf, "IC types")
    _balance_panel(ax_pol, pol_names, pol_real, pol_conf, "update policies")
    _section(fig, [ax_ic, ax_pol], "balance: realised vs configured")
    n_fams = _features(fig, bottom[0, 1], d)
    ndiv = int(d.diverged.sum())
    fig.suptitle(f"dataset {d.path.name}: experiment {cfg.metadata.name}, {d.n} operators ({ndiv} diverged), "
                 f"{cfg.grid_size}x{cfg.grid_size} grid, {cfg.simulation.num_channels} channels, "
                 f"T = {cfg.simulation.num_timesteps}, M = {cfg.simulation.num_realizations}",
                 fontsize=13, x=0.05, ha="left")
    numbers: dict[str, float | int] = {
        "operators": d.n, "diverged": ndiv, "diverged_fraction": ndiv / max(d.n, 1), "ic_types": len(set(d.ic_types)),
        "max_ic_deviation": float(np.abs(ic_real - ic_conf).max()),
        "max_policy_deviation": float(np.abs(pol_real - pol_conf).max()), "parameters": n_params,
        "rollout_operators": n_roll, "timesteps": int(cfg.simulation.num_timesteps), "grid_size": int(cfg.grid_size),
        "feature_families": n_fams,
    }
    path, size = save_figure(fig, out_path, dpi)
    arrays = {"ic_balance": np.stack([ic_real, ic_conf]), "policy_balance": np.stack([pol_real, pol_conf]),
              "rollouts": d.rollouts}
    return DashboardResult("dataset", path, size, numbers, arrays)
