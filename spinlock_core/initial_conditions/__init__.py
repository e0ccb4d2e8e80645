"""Initial conditions ``[C, H, W]``: one generator per module, looked up in ``IC_GENERATORS``.

Example::

    gen, params = resolve_variant("multiscale_grf_low", {"scales": [0.3, 0.35, 0.4]})
    u = generate_ic(gen, params, grid_size=64, channels=3, rng=np.random.default_rng(0))
"""

from .base import MIN_GRID_SIZE, ICGenerator
from .gaussian_random_field import GaussianRandomField, GRFParams, gaussian_random_field
from .localized import Localized, LocalizedParams, gaussian_blobs, localized
from .multiscale_grf import MultiscaleGRF, MultiscaleGRFParams, multiscale_grf
from .registry import IC_GENERATORS, generate_ic, resolve_variant, validate_params
from .structured import Structured, StructuredParams, plane_waves, snap_wavevectors, structured

__all__ = [
    "MIN_GRID_SIZE",
    "ICGenerator",
    "IC_GENERATORS",
    "resolve_variant",
    "validate_params",
    "generate_ic",
    "GaussianRandomField",
    "GRFParams",
    "gaussian_random_field",
    "MultiscaleGRF",
    "MultiscaleGRFParams",
    "multiscale_grf",
    "Structured",
    "StructuredParams",
    "structured",
    "snap_wavevectors",
    "plane_waves",
    "Localized",
    "LocalizedParams",
    "localized",
    "gaussian_blobs",
]
