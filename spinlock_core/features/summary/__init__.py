"""SUMMARY features: one row of 120 statistics per trajectory, and their realization aggregate.

Blocks (FEATURES.md, "SUMMARY per trajectory"), one module each::

    spatial 0-11 | spectral 12-23 | cross_channel 24-35 | dynamics 36-47 | causality 48-61 |
    invariants 62-109 | operator sensitivity 110-119 (computed with the operator, placed here)

Usage::

    per_traj = per_trajectory_features(traj)          # [N, M, 120], sensitivity columns NaN
    agg = aggregate(per_traj)                          # [N, 360]

Every row depends only on its own trajectory; everything is vectorised over operators,
realizations and time and stays on the input's device. Time-series statistics are computed in
float64 (population std, ddof 0, unless stated), the output is float32.

NaN policy (details in each block's docstring): columns 110-119 when no sensitivity is passed,
and in the rows of an operator whose sensitivity estimate failed (non-finite, or the log of a zero
norm: ``sensitivity.sensitivity_features`` returns NaN there, never a sentinel number);
with ``T = 1`` every column that needs two states (85 of columns 0-109: all but the ``*_final``
and ``*_mean`` columns and ``intermittency``); with ``T = 2`` additionally the columns that need
three states (second differences, a periodogram, lag-1 pairs, a quadratic fit); lag 2 / 3
asymmetries need ``T >= 4 / 5``, transfer entropy ``T >= 4``, Granger gains ``T >= 8``.
Flat series (std at most 1e-6 of their magnitude) give 0 for correlation-, phase- and
moment-type statistics, never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import causality, cross_channel, dynamics, invariants, spatial, spectral
from ._inputs import build_inputs

__all__ = [
    "VERSION",
    "BLOCKS",
    "SENSITIVITY_NAMES",
    "SENSITIVITY_SLICE",
    "SUMMARY_NAMES",
    "AGGREGATED_NAMES",
    "per_trajectory_features",
    "aggregate",
]

#: 1.1: slope_*, low_frac_final follow TEMPORAL 1.1, coherence_* its never-empty bands; a failed
#: operator-sensitivity estimate is NaN instead of 0 / 38.5 / -30
VERSION = "1.1"

#: Block modules in column order; each has ``NAMES`` and ``features(inputs) -> [N, M, k]``.
BLOCKS = (spatial, spectral, cross_channel, dynamics, causality, invariants)

SENSITIVITY_NAMES = (
    "lipschitz_incr_t0",
    "lipschitz_incr_tmid",
    "lipschitz_incr_tend",
    "lipschitz_op_t0",
    "lipschitz_op_tend",
    "lipschitz_op_scaling",
    "curvature",
    "noise_share",
    "jacobian_norm",
    "output_input_corr",
)
SENSITIVITY_SLICE = slice(110, 120)

SUMMARY_NAMES: tuple[str, ...] = (
    tuple(name for block in BLOCKS for name in block.NAMES) + SENSITIVITY_NAMES
)
AGGREGATED_NAMES: tuple[str, ...] = tuple(
    f"{name}_{stat}" for stat in ("mean", "std", "cv") for name in SUMMARY_NAMES
)

_EPS = 1e-8

assert len(SUMMARY_NAMES) == 120 and len(set(SUMMARY_NAMES)) == 120
assert SUMMARY_NAMES[SENSITIVITY_SLICE] == SENSITIVITY_NAMES


def per_trajectory_features(
    traj: Tensor,
    state_feats: Tensor | None = None,
    sensitivity: Tensor | None = None,
) -> Tensor:
    """SUMMARY features of each trajectory.

    Args:
        traj: rollouts ``[N, M, T, C, H, W]`` (C = 3, H = W), any floating dtype and device.
        state_feats: TEMPORAL per-state features ``[N, M, T, 63]`` of the same states (before
            the realization average); computed with ``temporal.state_features`` when None.
        sensitivity: operator-sensitivity columns ``[N, M, 10]`` (computed elsewhere, with the
            operator); when None columns 110-119 are NaN.

    Returns:
        ``[N, M, 120]`` float32 on ``traj``'s device, columns ``SUMMARY_NAMES``. Non-finite
        states are not checked for (that would force a device sync): a diverged trajectory
        gives meaningless values in its own row and leaves every other row untouched.

    Raises:
        ValueError: bad shapes (see ``_inputs.build_inputs``) or a sensitivity of the wrong shape.
    """
    with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
        inputs = build_inputs(traj, state_feats)
        N, M = traj.shape[:2]
        if sensitivity is None:
            sens = torch.full((N, M, len(SENSITIVITY_NAMES)), float("nan"), device=traj.device)
        else:
            if tuple(sensitivity.shape) != (N, M, len(SENSITIVITY_NAMES)):
                raise ValueError(
                    f"sensitivity must have shape {(N, M, len(SENSITIVITY_NAMES))}, "
                    f"got {tuple(sensitivity.shape)}"
                )
            sens = sensitivity.to(device=traj.device)
        blocks = [block.features(inputs).float() for block in BLOCKS]
        return torch.cat([*blocks, sens.float()], dim=-1)


def aggregate(per_traj: Tensor) -> Tensor:
    """``[mean | std | cv]`` over realizations: ``[N, M, F] -> [N, 3F]`` (float32).

    std has ddof 1 (0 when M = 1); ``cv = std / (sqrt(mean^2 + std^2) + 1e-8)``, bounded in [0, 1).
    NaN in a column (documented NaN, e.g. the sensitivity block when it was not computed)
    propagates to its three aggregated columns and nowhere else.

    Raises:
        ValueError: ``per_traj`` is not 3-D or has no realization.
    """
    if per_traj.ndim != 3 or per_traj.shape[1] < 1:
        raise ValueError(f"per_traj must be [N, M >= 1, F], got shape {tuple(per_traj.shape)}")
    x = per_traj.double()
    mean = x.mean(1)
    if x.shape[1] > 1:
        std = x.std(1, correction=1)
    else:
        std = torch.where(torch.isnan(mean), mean, torch.zeros_like(mean))
    cv = std / (torch.sqrt(mean * mean + std * std) + _EPS)
    return torch.cat([mean, std, cv], dim=-1).float()
