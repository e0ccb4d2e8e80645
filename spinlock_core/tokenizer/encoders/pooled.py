"""Statistics of every column of a sequence family over its states (``[B, T', F] -> [B, F * S]``), no weights.

Columns are statistic-major: ``[mean of all F | std of all F | ...]`` in the order of
``statistics``, named ``<feature>_<statistic>``. ``std`` is the population standard deviation
(ddof = 0), ``final`` the last state, ``slope`` the least-squares slope over the state index
0..T'-1 (the slope of ``np.polyfit(range(T'), x, 1)``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from .shapes import check_names, check_sequence

__all__ = ["STATISTICS", "PooledIdentityEncoder"]


def _slope(x: torch.Tensor) -> torch.Tensor:
    t = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
    t = t - t.mean()
    return torch.einsum("btf,t->bf", x - x.mean(dim=1, keepdim=True), t) / (t * t).sum()


#: statistic name -> ``[B, T', F] -> [B, F]``
STATISTICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda x: x.mean(dim=1),
    "std": lambda x: x.std(dim=1, correction=0),
    "min": lambda x: x.amin(dim=1),
    "max": lambda x: x.amax(dim=1),
    "final": lambda x: x[:, -1],
    "slope": _slope,
}


class PooledIdentityEncoder(nn.Module):
    """``[B, T', F] -> [B, F * len(statistics)]``, statistic-major (see the module docstring).

    Args:
        num_features: F. num_states: T'. statistics: keys of :data:`STATISTICS`, without repeats.
        feature_names: the F names used by :meth:`output_names` when it is given none.

    Raises:
        ValueError: an unknown or repeated statistic, ``slope`` with fewer than 2 states, a wrong
            number of feature names; in ``forward``, an input that is not ``[B, num_states, num_features]``.
    """

    reads = "sequence"
    trained = False

    def __init__(self, num_features: int, num_states: int, statistics: Sequence[str] = ("mean", "std"),
                 feature_names: Sequence[str] | None = None):
        super().__init__()
        statistics = [str(s) for s in statistics]
        if unknown := [s for s in statistics if s not in STATISTICS]:
            raise ValueError(f"unknown statistics {unknown}; known: {', '.join(STATISTICS)}")
        if not statistics or len(set(statistics)) != len(statistics):
            raise ValueError(f"name each statistic once, at least one; got {statistics}")
        if int(num_features) < 1 or int(num_states) < 1:
            raise ValueError(f"num_features and num_states must be >= 1, got {num_features} and {num_states}")
        if "slope" in statistics and int(num_states) < 2:
            raise ValueError(f"the slope needs at least 2 states, got num_states = {num_states}")
        self.num_features, self.num_states = int(num_features), int(num_states)
        self.statistics = statistics
        self.input_dim, self.output_dim = self.num_features, self.num_features * len(statistics)
        who = type(self).__name__
        self.feature_names = None if feature_names is None else check_names(feature_names, self.num_features, who)
        self.init_kwargs = {"num_features": self.num_features, "num_states": self.num_states,
                            "statistics": list(statistics), "feature_names": self.feature_names}

    @staticmethod
    def kwargs_from_params(params: dict[str, Any], *, input_dim: int, num_states, feature_names, name_prefix) -> dict:
        """Constructor kwargs from ``PooledIdentityParams`` (a dict) and the family's shape."""
        return {**params, "num_features": input_dim, "num_states": num_states, "feature_names": feature_names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, self.num_states, self.num_features, type(self).__name__)
        return torch.cat([STATISTICS[s](x) for s in self.statistics], dim=1)

    def output_names(self, input_names: Sequence[str] | None = None) -> list[str]:
        """``<feature>_<statistic>``, statistic-major; features from ``input_names``, else
        ``feature_names``, else ``f000``..."""
        if input_names is None:
            input_names = self.feature_names or [f"f{j:03d}" for j in range(self.num_features)]
        names = check_names(input_names, self.num_features, type(self).__name__)
        return [f"{n}_{s}" for s in self.statistics for n in names]
