"""Counter-based random draws, bit-identical on every device and in every batch.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11;
the Random123 library) keyed by ``SeedSequence([root, stage, operator index])`` with the counter
``(element block, step, realization, stream)``, then exact float transforms (Box-Muller Gaussian,
uniform, Laplace) built from correctly rounded IEEE operations only. Stream ids:
:mod:`.streams`; element layout: :data:`.constants.CHUNK_BLOCKS`.

Example::

    key = DrawKey.for_operator(42, index=17, realizations=5).at_step(3)
    eps = unit_noise(key, NOISE, (128, 64, 64), "gaussian")     # [5, 128, 64, 64] float32
"""

from .draw import BACKENDS, KINDS, keep_mask, keep_mask_keys, unit_noise, unit_noise_keys, words
from .key import DrawKey, philox_key
from .philox import philox4x32
from .streams import DRAW_A, DRAW_B, NOISE, PERTURBATION, POWER_START, dropout_stream

__all__ = [
    "GENERATOR",
    "DrawKey",
    "philox_key",
    "philox4x32",
    "words",
    "unit_noise",
    "keep_mask",
    "unit_noise_keys",
    "keep_mask_keys",
    "KINDS",
    "BACKENDS",
    "NOISE",
    "PERTURBATION",
    "POWER_START",
    "DRAW_A",
    "DRAW_B",
    "dropout_stream",
]

#: Name and version of the generator, to record in every file's attributes. Bump the version
#: whenever a draw changes (constants, layout, transforms, stream table).
GENERATOR = "philox4x32-10+box-muller-exact/1"
