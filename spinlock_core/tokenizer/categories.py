"""Categories of cleaned feature columns (SPEC 8) and the codebook sizes of a category (SPEC 9).

Columns are grouped by Ward linkage on the distance ``d_ij = sqrt(2 (1 - |r_ij|))``, ``r`` the
Pearson correlation between columns. Why Ward may be used on it: for unit-norm standardized
columns ``u_i = z_i / sqrt(N)`` (population z-scores), ``||u_i - u_j||^2 = 2 (1 - r_ij)``; flipping
the sign of one of them when ``r_ij < 0`` gives ``2 (1 - |r_ij|)``. So ``d_ij`` is the Euclidean
distance between the two standardized columns after sign alignment, i.e.
``min(||u_i - u_j||, ||u_i + u_j||)``, the quotient metric of the sphere under ``u -> -u`` (a true
metric). Within a group of columns that one sign choice aligns pairwise (the columns that belong
together) these are exactly Euclidean distances between points, which is what Ward's
variance-minimising update assumes. Average linkage on ``1 - |r|`` chains on real features (one
category took 331 of 334 columns), and the silhouette keeps rising with ``k``, so it is reported
as a diagnostic around the chosen ``k``, never used to choose it.

The number of categories is ``num_categories`` when fixed, else ``clamp(round(F / 10), 4, 25)``
with ``round`` half up (``F = 45`` gives 5). The Ward tree is cut with ``fcluster(maxclust=k)``;
clusters smaller than ``min_size`` columns are then merged, smallest first, into their most
correlated neighbour: the cluster whose centroid has the largest ``|r|`` with the small cluster's
centroid. A category's centroid is the mean of its sign-aligned standardized columns (signs of
the leading eigenvector of the category's correlation matrix), so the orthogonality reported
(mean ``|r|`` between centroids) is measured on data.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

__all__ = [
    "Categories",
    "discover_categories",
    "default_num_categories",
    "correlation_distance",
    "category_centroids",
    "category_orthogonality",
    "codebook_sizes",
    "CATEGORIES_FORMAT",
    "CATEGORIES_VERSION",
]

CATEGORIES_FORMAT = "spinlock.categories"
CATEGORIES_VERSION = 1
#: the automatic category count is clamped to this range (SPEC 8)
MIN_AUTO_CATEGORIES, MAX_AUTO_CATEGORIES = 4, 25
#: the silhouette is reported for k + these offsets
SILHOUETTE_OFFSETS = (-2, -1, 0, 1, 2)


# ----------------------------------------------------------------------------- validation


def _validate_features(x, what: str = "x") -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, F], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 rows to correlate columns, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{what} has no columns")
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.all(np.isfinite(x), axis=0))
        raise ValueError(f"{what} has non-finite values in column(s) {bad[:10].tolist()}")
    return x


def _standardize(x: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """Population z-scores of the columns of ``x [N, F]``; a constant column raises."""
    std = x.std(axis=0)
    flat = np.flatnonzero(~(std > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))))
    if flat.size:
        j = int(flat[0])
        label = f"'{names[j]}' (index {j})" if names is not None else f"index {j}"
        raise ValueError(
            f"column {label} has zero variance ({flat.size} constant column(s)); cleaning drops "
            "columns with variance < 1e-8 before categories are discovered"
        )
    return (x - x.mean(axis=0)) / std


def _validate_names(names, n_columns: int) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)
    if len(names) != n_columns:
        raise ValueError(f"names has {len(names)} entries but x has {n_columns} columns")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"names must be unique, repeated: {dup[:10]}")
    return names


def _validate_assignment(assignment, n_columns: int) -> np.ndarray:
    if hasattr(assignment, "detach"):
        assignment = assignment.detach().cpu().numpy()
    a = np.asarray(assignment)
    if a.ndim != 1 or a.shape[0] != n_columns:
        raise ValueError(f"assignment must be [F] with F = {n_columns} columns, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"assignment must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def default_num_categories(n_features: int) -> int:
    """``clamp(round(F / 10), 4, 25)``, rounding half up (SPEC 8).

    Raises:
        ValueError: ``n_features < 1``.
    """
    if isinstance(n_features, bool) or int(n_features) != n_features or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    return int(min(MAX_AUTO_CATEGORIES, max(MIN_AUTO_CATEGORIES, (int(n_features) + 5) // 10)))


# ----------------------------------------------------------------------------- distances, centroids


def _correlation(z: np.ndarray) -> np.ndarray:
    r = z.T @ z / z.shape[0]
    r = np.clip((r + r.T) / 2, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    return r


def correlation_distance(x, names: Sequence[str] | None = None) -> np.ndarray:
    """Square matrix ``sqrt(2 (1 - |r|)) [F, F]`` between the columns of ``x [N, F]``.

    Symmetric with an exact zero diagonal (rounding that would make ``1 - |r|`` negative is
    clipped), as ``squareform`` and ``silhouette_score(metric="precomputed")`` require.

    Raises:
        ValueError: ``x`` not ``[N >= 2, F >= 1]``, non-finite, or with a constant column.
    """
    z = _standardize(_validate_features(x), names)
    return _distance_from_correlation(_correlation(z))


def _distance_from_correlation(r: np.ndarray) -> np.ndarray:
    d = np.sqrt(2.0 * np.clip(1.0 - np.abs(r), 0.0, None))
    np.fill_diagonal(d, 0.0)
    return d


def _aligned_centroid(z_cols: np.ndarray) -> np.ndarray:
    """Mean of the sign-aligned standardized columns ``z_cols [N, n]`` -> ``[N]``.

    Signs are those of the leading eigenvector of the columns' correlation matrix, the overall
    sign fixed by the first column (irrelevant to ``|r|``, fixed for determinism).
    """
    if z_cols.shape[1] == 1:
        return z_cols[:, 0].copy()
    _, vecs = np.linalg.eigh(_correlation(z_cols))
    lead = vecs[:, -1]
    signs = np.where(lead >= 0, 1.0, -1.0)
    if signs[0] < 0:
        signs = -signs
    return z_cols @ signs / z_cols.shape[1]


def _centroids(z: np.ndarray, labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    return np.stack([_aligned_centroid(z[:, labels == c]) for c in order], axis=1)


def _abs_corr(a: np.ndarray) -> np.ndarray:
    """``|r| [k, k]`` between the columns of ``a [N, k]``; a constant column correlates 0."""
    a = a - a.mean(axis=0)
    norm = np.linalg.norm(a, axis=0)
    ok = norm > 0
    u = np.zeros_like(a)
    u[:, ok] = a[:, ok] / norm[ok]
    return np.abs(np.clip(u.T @ u, -1.0, 1.0))


def category_centroids(x, assignment) -> np.ndarray:
    """Centroids ``[N, k]`` of the categories of the columns of ``x [N, F]``.

    ``assignment [F]`` holds integer labels; centroid ``c`` belongs to the ``c``-th smallest
    label. A centroid is the mean of its category's standardized columns after sign alignment
    (signs of the leading eigenvector of the category's correlation matrix).

    Raises:
        ValueError: bad shapes, non-integer labels, non-finite values or a constant column.
    """
    x = _validate_features(x)
    a = _validate_assignment(assignment, x.shape[1])
    z = _standardize(x)
    return _centroids(z, a, np.unique(a))


def category_orthogonality(x, assignment) -> float:
    """Mean ``|Pearson r|`` over the pairs of distinct category centroids of ``x [N, F]``.

    0 is perfectly orthogonal categories; NaN with fewer than two categories. Accepts numpy
    arrays or torch tensors. This is the one implementation used by category discovery and by
    the tokenizer metrics.

    Raises:
        ValueError: as :func:`category_centroids`.
    """
    cent = category_centroids(x, assignment)
    k = cent.shape[1]
    if k < 2:
        return float("nan")
    r = _abs_corr(cent)
    return float(r[np.triu_indices(k, 1)].mean())


# ----------------------------------------------------------------------------- result


def _nan_to_none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


@dataclass(frozen=True, eq=False)
class Categories:
    """Category assignment of the ``F`` cleaned columns and its diagnostics.

    ``assignment [F]`` holds labels ``0..k-1``, numbered in the order of each category's first
    column. ``silhouette[i]`` belongs to ``k = silhouette_k[i]`` (the raw Ward cut, before
    merging); NaN where that ``k`` is outside ``[2, F - 1]`` or the cut has fewer than two
    clusters. ``silhouette_final`` is that of the assignment after merging.
    """

    names: tuple[str, ...]
    assignment: np.ndarray
    requested_num_categories: int
    num_clusters_cut: int
    min_size: int
    silhouette_k: tuple[int, ...]
    silhouette: tuple[float, ...]
    silhouette_final: float
    orthogonality: float
    #: names of the columns whose cluster had fewer than ``min_size`` columns and was merged
    merged_columns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        a = np.array(self.assignment, dtype=np.int64)
        if a.ndim != 1 or a.shape[0] != len(self.names):
            raise ValueError(f"assignment has shape {a.shape} but there are {len(self.names)} names")
        k = int(a.max()) + 1 if a.size else 0
        if a.size and (a.min() < 0 or set(np.unique(a).tolist()) != set(range(k))):
            raise ValueError(f"assignment labels must be exactly 0..k-1, got {np.unique(a).tolist()}")
        firsts = [int(np.flatnonzero(a == c)[0]) for c in range(k)]
        if firsts != sorted(firsts):
            raise ValueError("categories must be numbered in the order of their first column")
        if len(self.silhouette_k) != len(self.silhouette):
            raise ValueError("silhouette_k and silhouette differ in length")
        a.setflags(write=False)
        object.__setattr__(self, "assignment", a)

    @property
    def num_categories(self) -> int:
        return int(self.assignment.max()) + 1

    @property
    def sizes(self) -> tuple[int, ...]:
        """Columns per category ``[k]``."""
        return tuple(int(s) for s in np.bincount(self.assignment, minlength=self.num_categories))

    @property
    def members(self) -> tuple[tuple[int, ...], ...]:
        """Column indices of each category, ascending."""
        return tuple(tuple(np.flatnonzero(self.assignment == c).tolist()) for c in range(self.num_categories))

    @property
    def category_names(self) -> tuple[tuple[str, ...], ...]:
        """Column names of each category, in column order."""
        return tuple(tuple(self.names[j] for j in m) for m in self.members)

    def meets_orthogonality(self, target: float) -> bool:
        """Whether the mean ``|r|`` between centroids is at most ``target`` (NaN never meets)."""
        return bool(self.orthogonality <= target)

    def codebook_sizes(self, scale: int = 2, overrides=None) -> tuple[tuple[int, int, int], ...]:
        """``(K0, K1, K2)`` of every category from its column count (see :func:`codebook_sizes`)."""
        return tuple(codebook_sizes(n, scale=scale, overrides=overrides) for n in self.sizes)

    def to_dict(self) -> dict:
        return {
            "format": CATEGORIES_FORMAT,
            "version": CATEGORIES_VERSION,
            "linkage": "ward",
            "distance": "sqrt(2 * (1 - |pearson r|))",
            "names": list(self.names),
            "assignment": self.assignment.tolist(),
            "requested_num_categories": self.requested_num_categories,
            "num_clusters_cut": self.num_clusters_cut,
            "min_size": self.min_size,
            "silhouette": {
                "k": list(self.silhouette_k),
                "value": [_nan_to_none(v) for v in self.silhouette],
            },
            "silhouette_final": _nan_to_none(self.silhouette_final),
            "orthogonality": _nan_to_none(self.orthogonality),
            "merged_columns": list(self.merged_columns),
            # derived, for readers of the file
            "sizes": list(self.sizes),
            "categories": [list(c) for c in self.category_names],
        }

    def to_json(self, **kwargs) -> str:
        """Strict JSON (NaN written as ``null``)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping) -> Categories:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            ValueError: another format, a newer version, or inconsistent fields.
        """
        if d.get("format") != CATEGORIES_FORMAT:
            raise ValueError(f"not a categories record: format {d.get('format')!r}")
        if d.get("version") != CATEGORIES_VERSION:
            raise ValueError(f"categories record version {d.get('version')!r}, this code reads {CATEGORIES_VERSION}")

        def f(v):
            return float("nan") if v is None else float(v)

        out = cls(
            names=tuple(d["names"]),
            assignment=np.asarray(d["assignment"], dtype=np.int64),
            requested_num_categories=int(d["requested_num_categories"]),
            num_clusters_cut=int(d["num_clusters_cut"]),
            min_size=int(d["min_size"]),
            silhouette_k=tuple(int(k) for k in d["silhouette"]["k"]),
            silhouette=tuple(f(v) for v in d["silhouette"]["value"]),
            silhouette_final=f(d["silhouette_final"]),
            orthogonality=f(d["orthogonality"]),
            merged_columns=tuple(d.get("merged_columns", ())),
        )
        if "sizes" in d and list(d["sizes"]) != list(out.sizes):
            raise ValueError(f"sizes {d['sizes']} disagree with the assignment ({list(out.sizes)})")
        return out

    @classmethod
    def from_json(cls, text: str) -> Categories:
        return cls.from_dict(json.loads(text))


# ----------------------------------------------------------------------------- discovery


def _relabel_by_first_column(labels: np.ndarray) -> np.ndarray:
    order = sorted(np.unique(labels).tolist(), key=lambda c: int(np.flatnonzero(labels == c)[0]))
    out = np.empty_like(labels)
    for new, old in enumerate(order):
        out[labels == old] = new
    return out


def _merge_small(z: np.ndarray, labels: np.ndarray, min_size: int) -> tuple[np.ndarray, list[int]]:
    """Merge clusters of fewer than ``min_size`` columns into their most correlated neighbour.

    One at a time, the smallest first (ties: the one with the lowest first column), into the
    cluster whose centroid has the largest ``|r|`` with its centroid (ties: lowest first column);
    centroids are recomputed after every merge. Stops when none is small or one cluster is left.
    Returns the labels and the indices of the columns that were moved.
    """
    labels = _relabel_by_first_column(labels)
    moved: list[int] = []
    while True:
        k = int(labels.max()) + 1
        sizes = np.bincount(labels, minlength=k)
        small = np.flatnonzero(sizes < min_size)
        if small.size == 0 or k == 1:
            return labels, sorted(moved)
        c = int(small[np.argmin(sizes[small])])  # argmin takes the first (lowest label) on ties
        cent = _centroids(z, labels, np.arange(k))
        r = _abs_corr(cent)[c]
        r[c] = -np.inf
        target = int(np.argmax(r))
        moved.extend(np.flatnonzero(labels == c).tolist())
        labels = _relabel_by_first_column(np.where(labels == c, target, labels))


def _silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    n_labels = np.unique(labels).size
    if not 2 <= n_labels <= dist.shape[0] - 1:
        return float("nan")
    return float(silhouette_score(dist, labels, metric="precomputed"))


def discover_categories(
    x,
    names: Sequence[str],
    num_categories: int | str = "auto",
    min_size: int = 3,
) -> Categories:
    """Group the columns of ``x [N, F]`` (z-scored cleaned features) into categories (SPEC 8).

    Args:
        x: ``[N, F]`` feature matrix (numpy or torch), ``N >= 2``; columns are standardized
            again here, so z-scoring beforehand is not required for correctness.
        names: ``[F]`` unique column names.
        num_categories: ``"auto"`` for ``clamp(round(F / 10), 4, 25)``, or a fixed ``k`` with
            ``1 <= k <= F``.
        min_size: clusters with fewer columns are merged into their most correlated neighbour
            (``1`` disables merging).

    Returns:
        :class:`Categories`. The final number of categories can be below ``k``: merges remove
        small clusters, and ``fcluster`` returns fewer than ``k`` clusters when the tree has tied
        heights (e.g. duplicated columns; a ``UserWarning`` says so). With ``F < min_size`` all
        columns end in one category. Ward linkage is deterministic, so no seed is taken.

    Raises:
        ValueError: ``x`` not ``[N >= 2, F >= 1]``, non-finite or with a constant column;
            ``names`` of the wrong length or repeated; ``num_categories`` neither ``"auto"`` nor an
            integer in ``[1, F]``; ``"auto"`` with ``F < 4`` (fix ``num_categories`` instead);
            ``min_size < 1``.
    """
    x = _validate_features(x)
    n_columns = x.shape[1]
    names = _validate_names(names, n_columns)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    if isinstance(num_categories, str):
        if num_categories != "auto":
            raise ValueError(f"num_categories must be 'auto' or an integer, got {num_categories!r}")
        k = default_num_categories(n_columns)
        if k > n_columns:
            raise ValueError(
                f"num_categories='auto' gives clamp(round(F / 10), {MIN_AUTO_CATEGORIES}, "
                f"{MAX_AUTO_CATEGORIES}) = {k} categories but there are only F = {n_columns} columns; "
                f"fix num_categories to an integer <= {n_columns}"
            )
    elif isinstance(num_categories, bool) or not isinstance(num_categories, (int, np.integer)):
        raise ValueError(f"num_categories must be 'auto' or an integer, got {num_categories!r}")
    else:
        k = int(num_categories)
        if not 1 <= k <= n_columns:
            raise ValueError(f"num_categories must lie in [1, F = {n_columns}], got {k}")

    z = _standardize(x, names)
    r = _correlation(z)
    dist = _distance_from_correlation(r)
    if n_columns == 1:
        tree = None
        labels = np.zeros(1, dtype=np.int64)
    else:
        tree = linkage(squareform(dist, checks=False), method="ward")
        labels = fcluster(tree, t=k, criterion="maxclust").astype(np.int64) - 1
    n_cut = int(np.unique(labels).size)
    if n_cut < k:
        warnings.warn(
            f"the Ward tree cut gives {n_cut} clusters, not the {k} asked for (tied merge heights, "
            "e.g. duplicated or perfectly correlated columns)",
            stacklevel=2,
        )

    sil_k = tuple(k + o for o in SILHOUETTE_OFFSETS)
    sil = []
    for kk in sil_k:
        if tree is None or not 2 <= kk <= n_columns - 1:
            sil.append(float("nan"))
        else:
            sil.append(_silhouette(dist, fcluster(tree, t=kk, criterion="maxclust")))

    final, moved = _merge_small(z, labels, int(min_size))
    return Categories(
        names=names,
        assignment=final,
        requested_num_categories=k,
        num_clusters_cut=n_cut,
        min_size=int(min_size),
        silhouette_k=sil_k,
        silhouette=tuple(sil),
        silhouette_final=_silhouette(dist, final),
        orthogonality=category_orthogonality(z, final),
        merged_columns=tuple(names[j] for j in moved),
    )


# ----------------------------------------------------------------------------- codebook sizes


def _positive_int(v, what: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def codebook_sizes(n_features: int, scale: int = 2, overrides=None) -> tuple[int, int, int]:
    """Codebook sizes ``(K0, K1, K2)`` of a category of ``n_features`` columns (SPEC 9).

    ``base = floor(7 log2 n)``; ``K0 = s max(15, 4 floor(base / 4))``,
    ``K1 = s max(6, floor(base / 2))``, ``K2 = s max(6, floor(base / 4))``. ``7 log2 n`` is an
    integer only for powers of two, where ``math.log2`` is exact, so the floor is exact.

    Args:
        n_features: columns in the category, ``>= 1``.
        scale: ``codebook_scale`` ``s >= 1`` (``s = 1`` is the seed's rule).
        overrides: per-level sizes that replace the rule as given (not multiplied by ``scale``):
            a mapping ``{level: size}`` with levels in ``{0, 1, 2}``, or a sequence of three
            entries, ``None`` keeping the rule. Sizes must be ``>= 2``.

    Raises:
        ValueError: non-integer or out-of-range ``n_features``, ``scale``, a level or a size.
    """
    n = _positive_int(n_features, "n_features")
    s = _positive_int(scale, "scale")
    base = math.floor(7 * math.log2(n))
    sizes = [s * max(15, 4 * (base // 4)), s * max(6, base // 2), s * max(6, base // 4)]
    if overrides is not None:
        if isinstance(overrides, Mapping):
            items = list(overrides.items())
        elif isinstance(overrides, Sequence) and not isinstance(overrides, str):
            if len(overrides) != 3:
                raise ValueError(f"overrides as a sequence needs 3 entries (levels 0, 1, 2), got {len(overrides)}")
            items = list(enumerate(overrides))
        else:
            raise ValueError(f"overrides must be a mapping {{level: size}} or 3 entries, got {overrides!r}")
        for level, size in items:
            if isinstance(level, bool) or level not in (0, 1, 2):
                raise ValueError(f"override level must be 0, 1 or 2, got {level!r}")
            if size is not None:
                sizes[level] = _positive_int(size, f"override of level {level}", minimum=2)
    return sizes[0], sizes[1], sizes[2]
