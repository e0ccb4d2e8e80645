"""Sobol sampling, parameter mapping, sample quality and balanced label assignment."""

from .assignment import assign_labels, balance_tolerance
from .mapping import decode_params, decode_row, map_unit, normalized_params
from .quality import SamplingQuality, quality_verdicts, sample_quality_for, sampling_quality
from .sobol import owen_scramble, sobol_points

__all__ = [
    "sobol_points",
    "owen_scramble",
    "map_unit",
    "decode_params",
    "decode_row",
    "normalized_params",
    "sampling_quality",
    "SamplingQuality",
    "sample_quality_for",
    "quality_verdicts",
    "assign_labels",
    "balance_tolerance",
]
