"""INITIAL family: 14 statistics of each channel of the initial condition, ``[N, 42]`` (FEATURES.md).

Channel-major: columns ``c0_mean ... c0_peak_density, c1_mean, ...``. The statistics that share a
name with a TEMPORAL column use that column's definition (``spatial`` and ``spectral``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import spatial, spectral
from ._common import Prepared, prepare, validate_states, working_dtype

__all__ = ["INITIAL_NAMES", "STATISTICS", "VERSION", "initial_features"]

STATISTICS: tuple[str, ...] = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "min",
    "max",
    "grad_energy",
    "laplacian_energy",
    "corr_length",
    "centroid",
    "slope",
    "entropy",
    "anisotropy",
    "peak_density",
)
CHANNELS = 3
INITIAL_NAMES: tuple[str, ...] = tuple(f"c{c}_{s}" for c in range(CHANNELS) for s in STATISTICS)
#: 1.1: c?_slope over the rings that carry energy (see temporal.VERSION)
VERSION = "1.1"

_SPATIAL_IDX = [spatial.NAMES.index(s) for s in STATISTICS[:9]]
_SPECTRAL_IDX = [spectral.NAMES.index(s) for s in STATISTICS[9:13]]


def initial_features(ic: Tensor, chunk: int = 256) -> Tensor:
    """The 42 INITIAL features of initial conditions ``ic [N, 3, H, W]``: ``[N, 42]`` float32.

    ``peak_density``: pixels strictly above their 8 periodic neighbours and above
    ``mean + 2 std`` of their channel, per 1,000 pixels. ICs are processed ``chunk`` at a time;
    each row depends on its own IC only. Runs on ``ic``'s device (float64 input in float64).
    Raises ``ValueError`` for a malformed ``ic`` or ``chunk < 1``.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    ic = validate_states(ic, name="ic", channels=CHANNELS, convert=False)
    dtype = working_dtype(ic.dtype)
    n, c, h, w = ic.shape
    out = torch.empty(n, len(INITIAL_NAMES), dtype=torch.float32, device=ic.device)
    with torch.inference_mode():
        for start in range(0, n, chunk):
            xs = ic[start : start + chunk].to(dtype)
            nb = xs.shape[0]
            p = prepare(xs.reshape(nb * c, h, w))
            stats = torch.cat(
                [
                    spatial.spatial_from(p)[:, _SPATIAL_IDX],
                    spectral.spectral_from(p)[:, _SPECTRAL_IDX],
                    _peak_density(p)[:, None],
                ],
                dim=1,
            )
            out[start : start + nb] = stats.reshape(nb, c * len(STATISTICS))
    return out


def _peak_density(p: Prepared) -> Tensor:
    """Strict 8-neighbour periodic local maxima above mean + 2 std, per 1,000 pixels: ``[B]``."""
    v = p.v
    std = v.square().mean(dim=(-2, -1)).sqrt()
    is_max = v > 2.0 * std[:, None, None]
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            if sy or sx:
                is_max &= v > torch.roll(v, shifts=(sy, sx), dims=(-2, -1))
    h, w = v.shape[-2:]
    return is_max.sum(dim=(-2, -1)).to(v.dtype) * (1000.0 / (h * w))
