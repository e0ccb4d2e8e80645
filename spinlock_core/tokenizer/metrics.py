"""Metrics of the categorical hierarchical VQ-VAE (SPEC 9), as pure functions of arrays.

Every function accepts numpy arrays or torch tensors and returns Python floats or numpy arrays.
Tokens are ``[N, C * L]`` int, category-major and level-minor (column ``c * L + l`` is level
``l`` of category ``c``), and every codebook is judged against its OWN size: the earlier
implementation divided by the wrong codebook size and reported a utilization of 93.7% (per-level
values above 1) where the truth was lower.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

from spinlock_core.tokenizer.categories import category_orthogonality

__all__ = [
    "reconstruction_error",
    "quality",
    "utilization",
    "utilization_per_codebook",
    "mean_utilization",
    "utilization_applies",
    "UTILIZATION_MIN_ROWS_PER_K0",
    "perplexity",
    "perplexity_per_codebook",
    "per_level_quality",
    "adjusted_mutual_information",
    "level0_ami_per_category",
    "category_orthogonality",
    "noise_ceiling",
    "TokenizerMetrics",
    "compute_tokenizer_metrics",
    "METRICS_FORMAT",
    "METRICS_VERSION",
]

METRICS_FORMAT = "spinlock.tokenizer_metrics"
METRICS_VERSION = 1
#: a utilization threshold is judged only on splits of at least this many rows per level-0 code
UTILIZATION_MIN_ROWS_PER_K0 = 5


# ----------------------------------------------------------------------------- validation


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _codes(indices, codebook_size, what: str = "indices") -> tuple[np.ndarray, int]:
    """``indices [N]`` as int64 checked against ``[0, codebook_size)``."""
    idx = _np(indices)
    if idx.ndim != 1:
        raise ValueError(f"{what} must be 1-D [N], got shape {idx.shape}")
    if idx.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got dtype {idx.dtype}")
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, (int, np.integer)) or codebook_size < 1:
        raise ValueError(f"codebook_size must be an integer >= 1, got {codebook_size!r}")
    k = int(codebook_size)
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= k:
        raise ValueError(
            f"{what} range [{lo}, {hi}] lies outside [0, {k}): codes must be judged against the "
            "size of the codebook that produced them"
        )
    return idx.astype(np.int64), k


def _token_table(tokens, sizes) -> tuple[np.ndarray, np.ndarray]:
    t = _np(tokens)
    if t.ndim != 2:
        raise ValueError(f"tokens must be 2-D [N, C * L], got shape {t.shape}")
    s = _np(sizes)
    if s.ndim != 1 or s.shape[0] != t.shape[1]:
        raise ValueError(f"sizes must list one codebook size per token column ({t.shape[1]}), got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"sizes must be integers, got dtype {s.dtype}")
    return t, s


# ----------------------------------------------------------------------------- reconstruction


def reconstruction_error(x, x_hat) -> float:
    """Mean squared error between ``x`` and ``x_hat`` (same shape, normalised space).

    Raises:
        ValueError: shapes differ, empty or non-finite input.
    """
    a = _np(x).astype(np.float64)
    b = _np(x_hat).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x has shape {a.shape} but x_hat has shape {b.shape}")
    if a.size == 0:
        raise ValueError("x is empty")
    err = float(np.mean((a - b) ** 2))
    if not math.isfinite(err):
        raise ValueError("reconstruction error is not finite (NaN or inf in x or x_hat)")
    return err


def quality(x, x_hat) -> float:
    """``1 - reconstruction_error(x, x_hat)``: 1 is perfect, 0 is as good as predicting zeros
    for z-scored columns."""
    return 1.0 - reconstruction_error(x, x_hat)


def per_level_quality(x, reconstructions: Sequence) -> tuple[float, ...]:
    """Quality of reconstructions decoded from levels ``{0}``, ``{0, 1}``, ``{0, 1, 2}``, ...

    Args:
        x: target ``[N, F]`` in normalised space.
        reconstructions: one ``[N, F]`` reconstruction per prefix of levels, coarsest first
            (producing them is the model's job).

    Raises:
        ValueError: no reconstruction, or one with another shape than ``x``.
    """
    if len(reconstructions) == 0:
        raise ValueError("reconstructions is empty: pass one per prefix of levels")
    return tuple(quality(x, r) for r in reconstructions)


# ----------------------------------------------------------------------------- codebook use


def utilization(indices, codebook_size: int) -> float:
    """Distinct codes in ``indices [N]`` divided by ``codebook_size``, the size of the codebook
    that produced them.

    Raises:
        ValueError: ``indices`` not 1-D integers, empty, or outside ``[0, codebook_size)``.
    """
    idx, k = _codes(indices, codebook_size)
    return np.unique(idx).size / k


def utilization_per_codebook(tokens, sizes) -> np.ndarray:
    """Utilization ``[C * L]`` of every token column of ``tokens [N, C * L]``, each against its own
    size in ``sizes [C * L]``."""
    t, s = _token_table(tokens, sizes)
    return np.array([utilization(t[:, j], int(s[j])) for j in range(t.shape[1])], dtype=np.float64)


def mean_utilization(tokens, sizes) -> float:
    """Mean over codebooks of :func:`utilization_per_codebook` (SPEC 9's ``utilization``)."""
    return float(utilization_per_codebook(tokens, sizes).mean())


def utilization_applies(n_rows: int, k0) -> bool:
    """Whether a utilization threshold may be judged on a split of ``n_rows`` rows.

    It needs at least ``5 * K0`` rows (fewer rows cannot visit every code). ``k0`` is a level-0
    codebook size or a sequence of them (one per category); the largest is used.

    Raises:
        ValueError: ``n_rows < 0`` or a size below 1.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise ValueError(f"n_rows must be an integer >= 0, got {n_rows!r}")
    ks = np.atleast_1d(_np(k0))
    if ks.size == 0 or not np.issubdtype(ks.dtype, np.integer) or ks.min() < 1:
        raise ValueError(f"k0 must be one or more integer codebook sizes >= 1, got {k0!r}")
    return int(n_rows) >= UTILIZATION_MIN_ROWS_PER_K0 * int(ks.max())


def perplexity(indices, codebook_size: int) -> float:
    """``exp(H)`` of the code histogram, ``H = -sum p log p`` in nats (= ``2^H`` in bits): the
    number of equally used codes with the same entropy, between 1 and ``codebook_size``.

    Raises:
        ValueError: as :func:`utilization`.
    """
    idx, k = _codes(indices, codebook_size)
    p = np.bincount(idx, minlength=k) / idx.size
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def perplexity_per_codebook(tokens, sizes) -> np.ndarray:
    """:func:`perplexity` ``[C * L]`` of every token column of ``tokens [N, C * L]``."""
    t, s = _token_table(tokens, sizes)
    return np.array([perplexity(t[:, j], int(s[j])) for j in range(t.shape[1])], dtype=np.float64)


# ----------------------------------------------------------------------------- probes


def adjusted_mutual_information(codes, labels) -> float:
    """Adjusted mutual information between ``codes [N]`` and ``labels [N]`` (e.g. IC type).

    ``AMI = (MI - E[MI]) / (mean(H(U), H(V)) - E[MI])`` with ``E[MI]`` under the hypergeometric
    (permutation) model and the arithmetic mean, via scikit-learn with the method passed
    explicitly. About 0 for independent labelings at any ``N`` (raw NMI on a few hundred rows is
    mostly sampling bias); 1 when identical up to renaming. Labels may be strings.

    Raises:
        ValueError: not 1-D, different lengths, or empty.
    """
    a, b = _np(codes), _np(labels)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"codes and labels must be 1-D, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"codes has {a.shape[0]} rows but labels has {b.shape[0]}")
    if a.size == 0:
        raise ValueError("codes is empty")
    return float(adjusted_mutual_info_score(b, a, average_method="arithmetic"))


def level0_ami_per_category(tokens, labels, num_levels: int = 3) -> np.ndarray:
    """AMI ``[C]`` between each category's level-0 code (column ``c * num_levels``) and ``labels``.

    Raises:
        ValueError: ``tokens`` not ``[N, C * num_levels]``, or as
            :func:`adjusted_mutual_information`.
    """
    t = _np(tokens)
    if isinstance(num_levels, bool) or not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
        raise ValueError(f"num_levels must be an integer >= 1, got {num_levels!r}")
    if t.ndim != 2 or t.shape[1] == 0 or t.shape[1] % num_levels:
        raise ValueError(f"tokens must be [N, C * {num_levels}], got shape {t.shape}")
    return np.array(
        [adjusted_mutual_information(t[:, c], labels) for c in range(0, t.shape[1], num_levels)],
        dtype=np.float64,
    )


def noise_ceiling(reliabilities) -> float:
    """Mean reliability of the kept columns: the ceiling of ``quality`` on held-out data (SPEC 8).

    Raises:
        ValueError: empty, not 1-D, or non-finite.
    """
    r = _np(reliabilities).astype(np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"reliabilities must be a non-empty 1-D array, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("reliabilities contain NaN or inf")
    return float(r.mean())


# ----------------------------------------------------------------------------- record


def _nan_to_none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


@dataclass(frozen=True)
class TokenizerMetrics:
    """Every SPEC 9 metric of a trained tokenizer.

    Per-codebook lists have ``num_categories * num_levels`` entries in token-column order
    (category-major, level-minor). Utilization and perplexity are on the validation split unless
    the name says train. Optional probes are NaN when not measured.
    """

    num_categories: int
    num_levels: int
    n_train: int
    n_val: int
    reconstruction_error: float
    quality: float
    per_level_quality: tuple[float, ...]
    codebook_sizes: tuple[int, ...]
    utilization_train: tuple[float, ...]
    utilization_val: tuple[float, ...]
    perplexity_val: tuple[float, ...]
    #: whether the validation split has the ``5 * K0`` rows a utilization threshold needs
    utilization_threshold_applies: bool
    #: AMI between each category's level-0 code and the IC type (empty when not measured)
    ami_ic_type_per_category: tuple[float, ...] = field(default_factory=tuple)
    orthogonality: float = float("nan")
    noise_ceiling: float = float("nan")

    def __post_init__(self) -> None:
        n = self.num_categories * self.num_levels
        for name in ("codebook_sizes", "utilization_train", "utilization_val", "perplexity_val"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries, expected num_categories x num_levels = {n}"
                )
        if len(self.per_level_quality) != self.num_levels:
            raise ValueError(f"per_level_quality has {len(self.per_level_quality)} entries, expected {self.num_levels}")
        if self.ami_ic_type_per_category and len(self.ami_ic_type_per_category) != self.num_categories:
            raise ValueError("ami_ic_type_per_category needs one entry per category")

    @property
    def utilization(self) -> float:
        """Mean validation utilization over codebooks."""
        return float(np.mean(self.utilization_val))

    @property
    def utilization_train_mean(self) -> float:
        return float(np.mean(self.utilization_train))

    @property
    def ami_ic_type(self) -> float:
        """Mean over categories of the level-0 AMI with the IC type (lower is better); NaN when
        not measured."""
        return float(np.mean(self.ami_ic_type_per_category)) if self.ami_ic_type_per_category else float("nan")

    @property
    def ami_ic_type_max(self) -> float:
        """The largest per-category level-0 AMI with the IC type; NaN when not measured."""
        return float(np.max(self.ami_ic_type_per_category)) if self.ami_ic_type_per_category else float("nan")

    def codebooks(self) -> list[dict]:
        """One record per codebook in token-column order: its size next to its use."""
        out = []
        for j, size in enumerate(self.codebook_sizes):
            c, level = divmod(j, self.num_levels)
            out.append(
                {
                    "column": j,
                    "category": c,
                    "level": level,
                    "codebook_size": int(size),
                    "utilization_train": float(self.utilization_train[j]),
                    "utilization_val": float(self.utilization_val[j]),
                    "perplexity_val": float(self.perplexity_val[j]),
                }
            )
        return out

    def to_dict(self) -> dict:
        d = {"format": METRICS_FORMAT, "version": METRICS_VERSION}
        d.update(
            {
                k: ([_nan_to_none(float(x)) for x in v] if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()
                if k not in ("codebook_sizes", "utilization_train", "utilization_val", "perplexity_val")
            }
        )
        for k in ("reconstruction_error", "quality", "orthogonality", "noise_ceiling"):
            d[k] = _nan_to_none(float(d[k]))
        d["ami_ic_type"] = _nan_to_none(self.ami_ic_type)
        d["ami_ic_type_max"] = _nan_to_none(self.ami_ic_type_max)
        d["utilization"] = self.utilization
        d["utilization_train_mean"] = self.utilization_train_mean
        d["codebooks"] = self.codebooks()
        return d

    def to_json(self, **kwargs) -> str:
        """Strict JSON (NaN written as ``null``); ``codebooks`` lists every codebook's size next
        to its train and validation utilization and validation perplexity."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping) -> TokenizerMetrics:
        if d.get("format") != METRICS_FORMAT:
            raise ValueError(f"not a tokenizer metrics record: format {d.get('format')!r}")
        if d.get("version") != METRICS_VERSION:
            raise ValueError(f"tokenizer metrics version {d.get('version')!r}, this code reads {METRICS_VERSION}")

        def f(v):
            return float("nan") if v is None else float(v)

        books = sorted(d["codebooks"], key=lambda b: b["column"])
        return cls(
            num_categories=int(d["num_categories"]),
            num_levels=int(d["num_levels"]),
            n_train=int(d["n_train"]),
            n_val=int(d["n_val"]),
            reconstruction_error=f(d["reconstruction_error"]),
            quality=f(d["quality"]),
            per_level_quality=tuple(f(v) for v in d["per_level_quality"]),
            codebook_sizes=tuple(int(b["codebook_size"]) for b in books),
            utilization_train=tuple(f(b["utilization_train"]) for b in books),
            utilization_val=tuple(f(b["utilization_val"]) for b in books),
            perplexity_val=tuple(f(b["perplexity_val"]) for b in books),
            utilization_threshold_applies=bool(d["utilization_threshold_applies"]),
            ami_ic_type_per_category=tuple(f(v) for v in d["ami_ic_type_per_category"]),
            orthogonality=f(d["orthogonality"]),
            noise_ceiling=f(d["noise_ceiling"]),
        )

    @classmethod
    def from_json(cls, text: str) -> TokenizerMetrics:
        return cls.from_dict(json.loads(text))


def compute_tokenizer_metrics(
    *,
    x_val,
    reconstruction_val,
    level_reconstructions_val: Sequence,
    tokens_train,
    tokens_val,
    codebook_sizes,
    num_levels: int = 3,
    ic_types_val=None,
    assignment=None,
    reliabilities=None,
) -> TokenizerMetrics:
    """Collect the SPEC 9 metrics from a model's outputs on the training and validation splits.

    Args:
        x_val: validation target ``[Nv, F]`` in normalised space.
        reconstruction_val: the full-model reconstruction ``[Nv, F]``.
        level_reconstructions_val: reconstructions from levels ``{0}``, ``{0, 1}``, ... (``num_levels``).
        tokens_train, tokens_val: ``[N, C * num_levels]`` tokens.
        codebook_sizes: ``[C * num_levels]`` sizes in token-column order.
        ic_types_val: ``[Nv]`` IC-type labels for the AMI probe (skipped when None).
        assignment: ``[F]`` category of each column, for the orthogonality of ``x_val``'s
            category centroids (skipped when None).
        reliabilities: reliabilities of the kept columns for the noise ceiling (skipped when None).

    Raises:
        ValueError: inconsistent shapes, or as the individual metrics.
    """
    tv, sizes = _token_table(tokens_val, codebook_sizes)
    tt, _ = _token_table(tokens_train, codebook_sizes)
    if tv.shape[1] % num_levels:
        raise ValueError(f"{tv.shape[1]} token columns are not a multiple of num_levels = {num_levels}")
    if len(level_reconstructions_val) != num_levels:
        raise ValueError(f"level_reconstructions_val needs {num_levels} entries, got {len(level_reconstructions_val)}")
    if tv.shape[0] != _np(x_val).shape[0]:
        raise ValueError(f"tokens_val has {tv.shape[0]} rows but x_val has {_np(x_val).shape[0]}")
    num_categories = tv.shape[1] // num_levels
    err = reconstruction_error(x_val, reconstruction_val)
    k0 = [int(k) for k in sizes[::num_levels]]
    nan = float("nan")
    return TokenizerMetrics(
        num_categories=num_categories,
        num_levels=num_levels,
        n_train=int(tt.shape[0]),
        n_val=int(tv.shape[0]),
        reconstruction_error=err,
        quality=1.0 - err,
        per_level_quality=per_level_quality(x_val, level_reconstructions_val),
        codebook_sizes=tuple(int(k) for k in sizes),
        utilization_train=tuple(utilization_per_codebook(tt, sizes).tolist()),
        utilization_val=tuple(utilization_per_codebook(tv, sizes).tolist()),
        perplexity_val=tuple(perplexity_per_codebook(tv, sizes).tolist()),
        utilization_threshold_applies=utilization_applies(int(tv.shape[0]), k0),
        ami_ic_type_per_category=(
            tuple(level0_ami_per_category(tv, ic_types_val, num_levels).tolist()) if ic_types_val is not None else ()
        ),
        orthogonality=category_orthogonality(x_val, assignment) if assignment is not None else nan,
        noise_ceiling=noise_ceiling(reliabilities) if reliabilities is not None else nan,
    )
