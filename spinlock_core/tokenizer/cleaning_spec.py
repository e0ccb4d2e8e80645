"""The fitted cleaning of one feature family (:func:`.cleaning.fit_cleaning`): everything needed
to clean new rows, and the record of every dropped column with its step and reason. Saved as JSON
with exact floats (:meth:`CleaningSpec.to_json`, :meth:`CleaningSpec.from_json`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["FORMAT_VERSION", "STEPS", "CleaningSpec", "DroppedColumn"]

FORMAT_VERSION = "1.0"
#: the steps that drop columns, in order
STEPS = ("variance", "reliability", "duplicate", "linear_combination")


@dataclass(frozen=True)
class DroppedColumn:
    name: str
    step: str
    reason: str


def _enc(v: float | None):
    """JSON has no inf/NaN: those become strings; finite floats keep their exact repr."""
    return v if v is None or math.isfinite(v) else repr(v)


def _dec(v) -> float | None:
    return None if v is None else float(v)


_FLOAT_FIELDS = ("tail_statistic", "medians", "mads", "cap_low", "cap_high", "reliabilities", "means", "stds")
_FLOAT_SETTINGS = (
    "heavy_tail_threshold", "mad_k", "variance_floor", "min_reliability", "duplicate_threshold", "linear_tol",
)


@dataclass(frozen=True)
class CleaningSpec:
    """Everything needed to clean new rows of one family, and the record of what was dropped.

    Per input column ``[F]``: ``names``, ``documented_nan``, ``tail_statistic`` (of the heavy-tail
    rule), ``medians`` and ``mads`` (pooled, after the signed log), ``cap_low`` and ``cap_high``
    (the bounds applied: ``median +/- mad_k * 1.4826 * MAD``, or their stratified hull; infinite
    where uncapped), ``reliabilities`` (None where not computed: dropped before the reliability
    step, or not estimable; 1.0 for families fitted without per-realization values, whose noise
    is not measured), ``kept``. Per kept column ``[F_kept]``: ``means``, ``stds``.
    ``log_scales`` maps each signed-log column to its scale ``s``. ``settings`` holds the
    thresholds the spec was fitted with, ``notes`` what was skipped or left uncapped.
    """

    family: str
    names: tuple[str, ...]
    documented_nan: tuple[bool, ...]
    log_scales: dict[str, float]
    tail_statistic: tuple[float, ...]
    medians: tuple[float, ...]
    mads: tuple[float, ...]
    mad_k: float
    cap_low: tuple[float, ...]
    cap_high: tuple[float, ...]
    reliabilities: tuple[float | None, ...]
    kept: tuple[bool, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    dropped: tuple[DroppedColumn, ...]
    settings: dict = field(default_factory=dict)
    n_train: int = 0
    n_diverged_excluded: int = 0
    notes: tuple[str, ...] = ()
    version: str = FORMAT_VERSION

    @property
    def kept_mask(self) -> np.ndarray:
        return np.array(self.kept, dtype=bool)

    @property
    def kept_names(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kept) if k)

    @property
    def transforms(self) -> tuple[str, ...]:
        """Per input column: ``"signed_log"`` or ``"identity"`` (before the cap)."""
        return tuple("signed_log" if n in self.log_scales else "identity" for n in self.names)

    @property
    def noise_ceiling(self) -> float:
        """Mean reliability of the kept columns (SPEC 8: the ceiling of ``quality``); columns whose
        reliability was not estimated (kept only with the filter off) do not count."""
        r = [v for v, k in zip(self.reliabilities, self.kept) if k and v is not None]
        return float(np.mean(r)) if r else float("nan")

    def dropped_by_step(self) -> dict[str, list[str]]:
        return {s: [d.name for d in self.dropped if d.step == s] for s in STEPS}

    def to_json(self) -> str:
        d = asdict(self)
        for k in _FLOAT_FIELDS:
            d[k] = [_enc(v) for v in d[k]]
        d["settings"] = {k: _enc(v) if isinstance(v, float) else v for k, v in d["settings"].items()}
        return json.dumps(d, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CleaningSpec:
        """Inverse of :meth:`to_json` (floats exact). Raises ValueError on another format version."""
        d = json.loads(text)
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"cleaning spec format {d.get('version')!r}; this code reads {FORMAT_VERSION!r}")
        for k in _FLOAT_FIELDS:
            d[k] = tuple(_dec(v) for v in d[k])
        for k in ("names", "documented_nan", "kept", "notes"):
            d[k] = tuple(d[k])
        d["dropped"] = tuple(DroppedColumn(**x) for x in d["dropped"])
        d["settings"] = {k: _dec(v) if k in _FLOAT_SETTINGS else v for k, v in d["settings"].items()}
        return cls(**d)
