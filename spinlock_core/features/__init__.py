"""Feature families: TEMPORAL (per state), SUMMARY (per trajectory and aggregated), ARCHITECTURE,
INITIAL. One module per group; :mod:`.families` is the registry that fixes names, order and storage."""

from .families import FAMILIES, Family, enabled_families, feature_names
from .initial import INITIAL_NAMES, initial_features
from .summary import AGGREGATED_NAMES, SUMMARY_NAMES, aggregate, per_trajectory_features
from .temporal import TEMPORAL_NAMES, state_features, temporal_features

__all__ = [
    "FAMILIES",
    "Family",
    "enabled_families",
    "feature_names",
    "TEMPORAL_NAMES",
    "state_features",
    "temporal_features",
    "SUMMARY_NAMES",
    "AGGREGATED_NAMES",
    "per_trajectory_features",
    "aggregate",
    "INITIAL_NAMES",
    "initial_features",
]
