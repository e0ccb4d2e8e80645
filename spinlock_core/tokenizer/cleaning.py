"""Cleaning of one feature family (SPEC 8): fitted on the training rows, applied to any rows.

Families are cleaned separately (SPEC 8: "Cleaning acts on each family's raw columns"), so
:func:`fit_cleaning` takes one family's ``[N, F]`` matrix with its column names. In order:

1. statistics from the training rows only: the training split minus ``metadata/diverged``
   (diverged operators are still cleaned and tokenized, flagged by the caller);
2. NaN -> 0 in documented-NaN columns (undocumented NaN raises);
3. signed log ``sign(x) log1p(|x| / s)`` for heavy-tailed columns (rule and threshold given),
   ``s`` the median ``|x|`` of the training rows; the columns and scales are recorded;
4. cap at median +/- k * 1.4826 * MAD (columns with MAD 0 stay uncapped); optionally
   (``cap_within_strata``) at the hull of those bounds and the same bounds within each policy
   stratum, so that a minority policy is not capped onto one value as a whole;
5. drop columns with variance below the floor;
6. drop columns with reliability below ``min_reliability`` (jackknife over realizations,
   :mod:`.reliability`): only where per-realization values are given (SUMMARY aggregated); other
   families get reliability 1 (no realization noise stored to measure). A column whose
   reliability cannot be estimated (std or cv over ``M < 3`` realizations, anything over
   ``M = 1``) is dropped too: nothing shows that it describes the operator;
   ``min_reliability <= 0`` switches the filter off;
7. drop near-duplicates judged within update-policy strata, on the capped values;
8. drop exact linear combinations of kept columns, judged on the values before the signed log
   and the cap (both are non-linear and would hide an identity such as band fractions summing
   to 1); skipped, with a note, when there are not more training rows than columns;
9. z-score with the training rows' mean and std.

Every dropped column is listed with its step and reason in :attr:`CleaningSpec.dropped`.

Identities across families (SUMMARY ``std_mean_mean`` is the time mean of the realization-
averaged TEMPORAL ``std``) are not visible to a per-family cleaning; the redundancy functions
(:mod:`.redundancy`) can be run on the concatenation of the cleaned families for that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .cleaning_spec import FORMAT_VERSION, STEPS, CleaningSpec, DroppedColumn
from .column_transforms import (
    apply_zscore,
    cap_bounds,
    clip_columns,
    heavy_tailed,
    log_scale,
    low_variance,
    mad_stats,
    nan_to_zero,
    signed_log,
    stratified_cap_bounds,
    training_rows,
    zscore_stats,
)
from .redundancy import (
    combination_coefficients,
    duplicates_within_strata,
    linear_combinations,
)
from .reliability import (
    AGGREGATES,
    aggregate_realizations,
    realization_map,
    reliability,
)

__all__ = ["FORMAT_VERSION", "STEPS", "CleaningSpec", "DroppedColumn", "apply_cleaning", "fit_cleaning"]

log = logging.getLogger(__name__)


def _signed_log_columns(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Signed log where ``scales`` is not NaN, identity elsewhere (``[K, F]``, ``[F]``)."""
    out = x.copy()
    lg = ~np.isnan(scales)
    out[:, lg] = signed_log(x[:, lg], scales[lg])
    return out


def _transform(x0: np.ndarray, scales: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Steps 3-4 with fitted statistics: signed log (where a scale is set), then the cap."""
    return clip_columns(_signed_log_columns(x0, scales), lo, hi)


def _not_estimable(agg: str, m: int) -> str:
    need = 2 if agg == "mean" else 3
    if m < need:
        return f"reliability not estimable: {agg} over M={m} realizations (needs M >= {need})"
    return "reliability not estimable: aggregate constant across operators"


def _reliabilities(x0, names, per_realization, per_realization_names, documented, rows, alive, scales, lo, hi):
    """``[F]`` reliabilities of the ``alive`` columns (NaN: not estimable or not computed) and a
    reason per not-estimable column. The per-realization values get the documented NaN -> 0 of
    their aggregated columns; each leave-one-out aggregate goes through the column's fitted
    signed log and cap, so the reliability is that of the column the model sees."""
    rel = np.full(len(names), np.nan)
    if per_realization is None:
        rel[alive] = 1.0
        return rel, {}
    pr = np.asarray(per_realization, dtype=np.float64)
    if pr.ndim != 3 or pr.shape[0] != x0.shape[0]:
        raise ValueError(f"per_realization must be [N={x0.shape[0]}, M, F'], got shape {pr.shape}")
    if per_realization_names is None or len(per_realization_names) != pr.shape[2]:
        raise ValueError("per_realization_names must name the last axis of per_realization")
    cmap = realization_map(names, per_realization_names)
    src = np.array([j for j, _ in cmap])
    doc_pr = np.zeros(pr.shape[2], dtype=bool)
    doc_pr[src[documented]] = True
    pr = nan_to_zero(pr[rows], doc_pr, list(per_realization_names))
    why = {}
    for agg in AGGREGATES:
        cols = np.array([c for c, (_, a) in enumerate(cmap) if a == agg], dtype=np.int64)
        check = cols[~documented[cols]]
        if check.size:  # the mapping is right only if the aggregates are reproduced
            again = aggregate_realizations(pr[:, :, src[check]], agg)
            stored = x0[rows][:, check]
            bad = np.abs(again - stored) > 1e-5 * (np.abs(stored) + np.abs(stored).mean(0)) + 1e-12
            if bad.any():
                wrong = [names[c] for c in check[bad.any(0)]]
                raise ValueError(f"per_realization does not reproduce the aggregated columns {wrong[:10]}")
        cols = cols[alive[cols]]
        if cols.size == 0:
            continue
        rel[cols] = reliability(pr[:, :, src[cols]], agg,
                                lambda a, c=cols: _transform(a, scales[c], lo[c], hi[c]))
        why.update({c: _not_estimable(agg, pr.shape[1]) for c in cols[np.isnan(rel[cols])]})
    return rel, why


def _combination_reasons(x, names, dropped, kept, residual, tol) -> dict[int, str]:
    """Reason per dropped column, with its combination of kept columns (largest terms first)."""
    if not dropped.size:
        return {}
    b, c0 = combination_coefficients(x, dropped, kept)
    std = x.std(0)
    out = {}
    for t, j in enumerate(dropped):
        weight = np.abs(b[t]) * std[kept] / std[j]  # contribution in standardized units
        order = [i for i in np.argsort(-weight) if weight[i] > 1e-6]
        terms = " ".join(f"{'-' if b[t, i] < 0 else '+'} {abs(b[t, i]):.4g}*{names[kept[i]]}" for i in order[:6])
        more = f" (+{len(order) - 6} more)" if len(order) > 6 else ""
        out[j] = (f"exact linear combination of kept columns (relative residual {residual[j]:.2e} <= {tol:g}): "
                  f"{names[j]} = {c0[t]:.4g} {terms}{more}")
    return out


def _alive(drops: dict, f: int) -> np.ndarray:
    return np.array([i not in drops for i in range(f)], dtype=bool)


def fit_cleaning(
    matrix,
    names: Sequence[str],
    *,
    train_mask=None,
    diverged=None,
    documented_nan=None,
    strata=None,
    per_realization=None,
    per_realization_names: Sequence[str] | None = None,
    family: str = "",
    heavy_tail_rule: str = "kurtosis",
    heavy_tail_threshold: float = 10.0,
    mad_k: float = 5.0,
    cap_within_strata: bool = False,
    variance_floor: float = 1e-8,
    min_reliability: float = 0.8,
    duplicate_threshold: float = 0.99,
    min_stratum: int = 30,
    duplicate_require: str = "any",
    linear_tol: float = 1e-6,
) -> CleaningSpec:
    """Fit the cleaning of one family (module docstring for the steps).

    Args:
        matrix: ``[N, F]`` raw values of the family (NaN allowed in documented columns).
        names: ``F`` unique column names.
        train_mask: ``[N]`` bool training split; None: every row.
        diverged: ``[N]`` bool ``metadata/diverged``; None: none.
        documented_nan: ``[F]`` bool (``families.documented_nan``); None: none.
        strata: ``[N]`` update-policy labels for the duplicate test; None: one stratum.
        per_realization: ``[N, M, F']`` per-realization values behind aggregated columns (SUMMARY
            ``per_trajectory``); None: no realization noise measured (reliability 1).
        per_realization_names: ``F'`` names; every column of ``matrix`` must be
            ``{name}_{mean|std|cv}`` of one of them.
        family: recorded in the spec.
        heavy_tail_rule, heavy_tail_threshold: see ``column_transforms.heavy_tailed``.
        mad_k, variance_floor, min_reliability, duplicate_threshold, min_stratum,
        duplicate_require, linear_tol: the thresholds of steps 4-8.
        cap_within_strata: cap at the hull of the pooled and the per-stratum bounds
            (``column_transforms.stratified_cap_bounds``) instead of the pooled bounds alone.

    Returns:
        The fitted :class:`CleaningSpec`.

    Raises:
        ValueError: shapes or names inconsistent, undocumented NaN or infinities, fewer than 2
            training rows, per-realization values that do not reproduce the aggregated columns,
            or an invalid threshold (from the step functions).
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"matrix must be [N, F], got shape {x.shape}")
    n, f = x.shape
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in names]
    if len(names) != f or len(set(names)) != f:
        raise ValueError(f"names must be {f} unique column names, got {len(names)} ({len(set(names))} unique)")
    diverged = np.zeros(n, dtype=bool) if diverged is None else diverged
    train_mask = np.ones(n, dtype=bool) if train_mask is None else train_mask
    rows = training_rows(diverged, train_mask)
    if strata is not None and np.shape(strata) != (n,):
        raise ValueError(f"strata must have shape ({n},), got {np.shape(strata)}")
    strata_train = None if strata is None else np.asarray(strata)[rows]
    documented = np.zeros(f, dtype=bool) if documented_nan is None else np.asarray(documented_nan)
    x0 = nan_to_zero(x, documented, names)
    notes: list[str] = []

    # signed log and cap
    heavy, stat = heavy_tailed(x0[rows], heavy_tail_rule, heavy_tail_threshold)
    scales = np.full(f, np.nan)
    scales[heavy] = log_scale(x0[rows][:, heavy])
    x1 = _signed_log_columns(x0, scales)
    med, mad = mad_stats(x1[rows])
    if cap_within_strata and strata is not None:
        lo, hi = stratified_cap_bounds(x1[rows], strata_train, mad_k, min_stratum)
    else:
        lo, hi = cap_bounds(med, mad, mad_k)
    x2 = clip_columns(x1, lo, hi)
    if np.any(mad == 0):
        notes.append(f"uncapped (MAD 0): {[names[i] for i in np.flatnonzero(mad == 0)]}")

    drops: dict[int, tuple[str, str]] = {}
    var = x2[rows].var(0)
    for i in np.flatnonzero(low_variance(x2[rows], variance_floor)):
        drops[i] = ("variance", f"variance {var[i]:.3g} < {variance_floor:g} on the training rows")

    rel, why = _reliabilities(x0, names, per_realization, per_realization_names, documented, rows,
                              _alive(drops, f), scales, lo, hi)
    if min_reliability > 0:
        for i in np.flatnonzero(_alive(drops, f)):
            if np.isnan(rel[i]):
                drops[i] = ("reliability", why[i])
            elif rel[i] < min_reliability:
                drops[i] = ("reliability",
                            f"reliability {rel[i]:.3f} < {min_reliability:g} (jackknife over realizations)")

    idx = np.flatnonzero(_alive(drops, f))
    dup = duplicates_within_strata(x2[rows][:, idx], strata_train, duplicate_threshold, min_stratum, duplicate_require)
    for j, d in dup.items():
        text = f"|r| = {d.r:.5f} > {duplicate_threshold:g} with {names[idx[d.of]]} in stratum {d.stratum!r}"
        drops[idx[j]] = ("duplicate", text)

    idx = np.flatnonzero(_alive(drops, f))
    if rows.sum() > idx.size:
        lin, residual = linear_combinations(x0[rows][:, idx], linear_tol)
        reasons = _combination_reasons(x0[rows][:, idx], [names[i] for i in idx], np.flatnonzero(lin),
                                       np.flatnonzero(~lin), residual, linear_tol)
        drops.update({idx[j]: ("linear_combination", text) for j, text in reasons.items()})
    else:
        msg = (f"linear-combination test skipped: {int(rows.sum())} training rows for {idx.size} columns "
               "(every column past the rank would be a combination)")
        log.warning("%s%s", f"{family}: " if family else "", msg)
        notes.append(msg)
    kept = _alive(drops, f)

    mean, std = zscore_stats(x2[rows][:, kept])
    order = sorted(drops, key=lambda i: (STEPS.index(drops[i][0]), i))
    dropped = tuple(DroppedColumn(names[i], *drops[i]) for i in order)
    for s in STEPS:
        log.info("%s: %s dropped %d columns", family or "cleaning", s, sum(d.step == s for d in dropped))
    settings = {
        "heavy_tail_rule": heavy_tail_rule, "heavy_tail_threshold": float(heavy_tail_threshold),
        "mad_k": float(mad_k), "cap_within_strata": bool(cap_within_strata),
        "variance_floor": float(variance_floor), "min_reliability": float(min_reliability),
        "duplicate_threshold": float(duplicate_threshold), "min_stratum": int(min_stratum),
        "duplicate_require": duplicate_require, "linear_tol": float(linear_tol),
        "realizations": None if per_realization is None else int(np.shape(per_realization)[1]),
    }
    return CleaningSpec(
        family=family,
        names=tuple(names),
        documented_nan=tuple(bool(v) for v in documented),
        log_scales={names[i]: float(scales[i]) for i in np.flatnonzero(heavy)},
        tail_statistic=tuple(float(v) for v in stat),
        medians=tuple(float(v) for v in med),
        mads=tuple(float(v) for v in mad),
        mad_k=float(mad_k),
        cap_low=tuple(float(v) for v in lo),
        cap_high=tuple(float(v) for v in hi),
        reliabilities=tuple(None if np.isnan(v) else float(v) for v in rel),
        kept=tuple(bool(v) for v in kept),
        means=tuple(float(v) for v in mean),
        stds=tuple(float(v) for v in std),
        dropped=dropped,
        settings=settings,
        n_train=int(rows.sum()),
        n_diverged_excluded=int((np.asarray(train_mask) & np.asarray(diverged)).sum()),
        notes=tuple(notes),
    )


def apply_cleaning(spec: CleaningSpec, matrix) -> np.ndarray:
    """Clean rows with a fitted spec: ``[N, F] -> [N, F_kept]`` float64 (every row, diverged or
    not: the statistics are the spec's).

    Raises:
        ValueError: ``matrix`` is not ``[N, len(spec.names)]``, or holds undocumented NaN or
            infinities.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(spec.names):
        raise ValueError(f"matrix must be [N, {len(spec.names)}] for this spec, got shape {x.shape}")
    x0 = nan_to_zero(x, np.array(spec.documented_nan, dtype=bool), spec.names)
    scales = np.array([spec.log_scales.get(n, np.nan) for n in spec.names])
    x2 = _transform(x0, scales, np.array(spec.cap_low), np.array(spec.cap_high))
    return apply_zscore(x2[:, spec.kept_mask], spec.means, spec.stds)
