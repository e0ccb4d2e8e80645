"""Everything the dashboards read, loaded in one place: a tokenizer checkpoint (model, pipeline,
categories, ``metrics.json``, ``training_history.json``), a Spinlock dataset and tokens.

:class:`DashboardData` is built with :meth:`DashboardData.from_checkpoint` or
:meth:`DashboardData.from_dataset` (or :meth:`DashboardData.load`, which tells the two apart).
The expensive parts (the model input of the dataset, tokens, re-simulated rollouts, feature
samples) are read on first use and kept, so a dashboard that does not need them does not pay
for them. The dashboards themselves only read these attributes and draw.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..storage.layout import PATHS

__all__ = ["DashboardInputError", "DashboardData", "DatasetView", "ModelInput", "TokenTable", "is_checkpoint",
           "is_dataset", "GALLERY_PER_TYPE", "ROLLOUT_OPERATORS", "ROLLOUT_FRAMES", "FEATURE_COLUMNS",
           "FEATURE_ROWS"]

log = logging.getLogger(__name__)

#: IC examples per IC type in the gallery
GALLERY_PER_TYPE = 4
#: operators re-simulated for the rollout panel, and time points shown of each
ROLLOUT_OPERATORS, ROLLOUT_FRAMES = 4, 6
#: columns per family in the feature distributions, and at most this many rows read
FEATURE_COLUMNS, FEATURE_ROWS = 10, 20_000


class DashboardInputError(ValueError):
    """A path that is neither a tokenizer checkpoint folder nor a Spinlock dataset, or inputs that
    do not belong together; the message names the path."""


def is_checkpoint(path: Path | str) -> bool:
    from ..tokenizer import checkpoint as ck

    p = Path(path)
    return p.is_dir() and (p / ck.MANIFEST).is_file()


def is_dataset(path: Path | str) -> bool:
    """A consolidated Spinlock dataset: an HDF5 file with a layout version, a config and the
    operators' metadata."""
    import h5py

    p = Path(path)
    if not p.is_file() or not h5py.is_hdf5(p):
        return False
    try:
        with h5py.File(p, "r") as f:
            return "layout_version" in f.attrs and "config" in f.attrs and PATHS.DIVERGED in f and PATHS.IC_TYPES in f
    except OSError:
        return False


def _strings(a) -> np.ndarray:
    return np.asarray(a).astype(str)


# ----------------------------------------------------------------------------- dataset


@dataclass(eq=False)
class DatasetView:
    """A Spinlock dataset: its config, metadata and unit parameters (read at once); initial
    conditions, rollouts and feature samples on first use."""

    path: Path
    cfg: object  # ExperimentConfig
    ic_types: np.ndarray  # [N] str
    policies: np.ndarray  # [N] str
    diverged: np.ndarray  # [N] bool
    operator_index: np.ndarray  # [N] int64
    unit_params: np.ndarray  # [N, P] float64 in the unit cube
    parameter_names: list[str]
    families: list[str]  # feature families present
    attrs: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.diverged.shape[0])

    @classmethod
    def open(cls, path: Path | str) -> "DatasetView":
        """Read the dataset at ``path``.

        Raises:
            DashboardInputError: not a Spinlock dataset, or its config cannot be read.
        """
        import h5py

        from ..config.experiment import ExperimentConfig
        from ..tokenizer.data import FAMILY_PATHS

        p = Path(path)
        if not is_dataset(p):
            raise DashboardInputError(f"{p}: not a Spinlock dataset (an HDF5 file written by `spinlock`)")
        with h5py.File(p, "r") as f:
            try:
                cfg = ExperimentConfig.model_validate(json.loads(f.attrs["config"]))
            except ValueError as e:
                raise DashboardInputError(f"{p}: its 'config' attribute is not a valid experiment config ({e})") from None
            n = int(f[PATHS.DIVERGED].shape[0])
            names = f.attrs.get("parameter_names")
            names = json.loads(names) if isinstance(names, str) else [n_ for n_, _ in cfg.parameter_space.ordered()]
            view = cls(
                path=p, cfg=cfg,
                ic_types=_strings(f[PATHS.IC_TYPES][()]),
                policies=_strings(f[PATHS.POLICIES][()]) if PATHS.POLICIES in f else np.full(n, "residual"),
                diverged=f[PATHS.DIVERGED][()].astype(bool),
                operator_index=(f[PATHS.OPERATOR_INDEX][()].astype(np.int64) if PATHS.OPERATOR_INDEX in f
                                else np.arange(n, dtype=np.int64)),
                unit_params=f[PATHS.PARAMS][()].astype(np.float64) if PATHS.PARAMS in f else np.zeros((n, 0)),
                parameter_names=[str(x) for x in names],
                families=[fam for fam, fp in FAMILY_PATHS.items() if fp in f],
                attrs={k: f.attrs[k] for k in ("experiment", "created", "n") if k in f.attrs},
            )
        return view

    # ------------------------------------------------------------------ lazily read

    @cached_property
    def gallery(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """IC type -> (rows ``[k]``, channel-0 fields ``[k, H, W]``) of its first
        :data:`GALLERY_PER_TYPE` operators, types in sorted order."""
        import h5py

        picks = {t: np.flatnonzero(self.ic_types == t)[:GALLERY_PER_TYPE] for t in sorted(set(self.ic_types))}
        out = {}
        with h5py.File(self.path, "r") as f:
            ds = f[PATHS.INPUT_FIELDS]
            for t, rows in picks.items():
                out[t] = (rows, ds[np.sort(rows), 0].astype(np.float32))
        return out

    @cached_property
    def rollout_rows(self) -> np.ndarray:
        """Rows re-simulated: the first non-diverged operator of each IC type (sorted by type), then
        further ones, :data:`ROLLOUT_OPERATORS` at most."""
        ok = np.flatnonzero(~self.diverged)
        rows = [int(ok[self.ic_types[ok] == t][0]) for t in sorted(set(self.ic_types[ok]))]
        rows += [int(r) for r in ok if int(r) not in rows]
        return np.asarray(sorted(rows[:ROLLOUT_OPERATORS]), dtype=np.int64)

    @cached_property
    def rollout_times(self) -> np.ndarray:
        t = self.cfg.simulation.num_timesteps
        return np.unique(np.linspace(0, t - 1, min(ROLLOUT_FRAMES, t)).round().astype(np.int64))

    @cached_property
    def rollouts(self) -> np.ndarray:
        """``[k, T', H, W]`` channel 0 of realization 0 of the :attr:`rollout_rows` operators at
        :attr:`rollout_times`, re-simulated on the CPU from their stored unit parameters and initial
        conditions (the dataset does not keep trajectories unless ``store_trajectories``). All ``M``
        realizations are rolled out together, as the generator does: a convolution over another
        batch size rounds differently, so realization 0 alone would drift from the stored one by
        float32 rounding. Always float32: a dataset simulated in reduced precision on CUDA is
        re-simulated close to, not bit for bit as, its stored run."""
        import h5py
        import torch

        from ..generation import operator_specs
        from ..operators import build_operator
        from ..rollout import rollout

        cfg, sim = self.cfg, self.cfg.simulation
        rows = self.rollout_rows
        with h5py.File(self.path, "r") as f:
            ics = f[PATHS.INPUT_FIELDS][rows].astype(np.float32)
        specs = operator_specs(cfg, self.unit_params[rows])
        dev = torch.device("cpu")
        t_total = sim.num_timesteps
        frames = []
        for j, row in enumerate(rows):
            index = int(self.operator_index[row])
            op = build_operator(specs[j], root_seed=cfg.root_seed, index=index, num_steps=max(t_total - 1, 1),
                                noise_period=sim.noise_period, device=dev)
            r = rollout(op, torch.from_numpy(ics[j]), realizations=sim.num_realizations, num_timesteps=t_total,
                        root_seed=cfg.root_seed, index=index, divergence_threshold=sim.divergence_threshold)
            frames.append(r.trajectory[0, self.rollout_times, 0].numpy())
        log.info("re-simulated %d operators for %d states", len(rows), t_total)
        return np.stack(frames) if frames else np.zeros((0, len(self.rollout_times), 1, 1), np.float32)

    @cached_property
    def feature_samples(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Family -> (names ``[k]``, values ``[n, k]`` float64) of up to :data:`FEATURE_COLUMNS`
        evenly spaced columns on up to :data:`FEATURE_ROWS` evenly spaced non-diverged rows. SUMMARY:
        its ``mean`` block; TEMPORAL: the final state."""
        import h5py

        from ..tokenizer.data import FAMILY_PATHS

        ok = np.flatnonzero(~self.diverged)
        rows = ok[np.unique(np.linspace(0, ok.size - 1, min(ok.size, FEATURE_ROWS)).round().astype(np.int64))] if ok.size else ok
        out = {}
        with h5py.File(self.path, "r") as f:
            for fam in self.families:
                ds = f[FAMILY_PATHS[fam]]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs.get("feature_names", [])]
                width = ds.shape[-1] if fam != "summary" else ds.shape[-1] // 3
                names = names[:width] if len(names) >= width else [f"{fam}_{j}" for j in range(width)]
                cols = np.unique(np.linspace(0, width - 1, min(width, FEATURE_COLUMNS)).round().astype(np.int64))
                if not rows.size:
                    x = np.zeros((0, cols.size))
                else:  # one hyperslab over the rows' range (fast), then the rows in memory
                    lo, hi = int(rows[0]), int(rows[-1]) + 1
                    block = ds[lo:hi, ds.shape[1] - 1, :] if fam == "temporal" else ds[lo:hi, :width]
                    x = block[rows - lo][:, cols]
                out[fam] = ([names[c] for c in cols], np.asarray(x, dtype=np.float64))
        return out


# ----------------------------------------------------------------------------- model input, tokens


@dataclass(eq=False)
class ModelInput:
    """The tokenizer's z-scored input ``x [N, F]`` of a dataset with its split."""

    x: np.ndarray  # [N, F] float32
    val_mask: np.ndarray  # [N] bool: validation split and not diverged
    diverged: np.ndarray  # [N] bool
    dataset: Path

    @property
    def x_val(self) -> np.ndarray:
        return self.x[self.val_mask]

    @property
    def x_ok(self) -> np.ndarray:
        """Rows of the operators that did not diverge."""
        return self.x[~self.diverged]


@dataclass(eq=False)
class TokenTable:
    """Tokens ``[N, 3 C]`` with the operators' labels; ``source`` says where they came from."""

    tokens: np.ndarray
    ic_types: np.ndarray
    policies: np.ndarray
    diverged: np.ndarray
    operator_index: np.ndarray
    source: str

    @classmethod
    def read(cls, paths, checkpoint_id: str | None = None) -> "TokenTable":
        """Concatenate tokens files (e.g. one per shard).

        Raises:
            DashboardInputError: a file is missing, not a tokens file, or made with another checkpoint.
        """
        from ..tokenizer.tokens_file import read_tokens

        parts = []
        for p in paths:
            try:
                t = read_tokens(p)
            except (ValueError, OSError) as e:
                raise DashboardInputError(str(e)) from None
            got = t["attrs"].get("checkpoint_id")
            got = got.decode() if isinstance(got, bytes) else got
            if checkpoint_id and got != checkpoint_id:
                raise DashboardInputError(f"{p}: tokens of checkpoint {str(got)[:12]}, not of this checkpoint "
                                          f"({checkpoint_id[:12]}); tokenize again")
            parts.append(t)
        if not parts:
            raise DashboardInputError("no tokens file given")
        cat = lambda k: np.concatenate([t[k] for t in parts])
        return cls(cat("tokens"), cat("ic_types"), cat("policies"), cat("diverged").astype(bool), cat("operator_index"),
                   source=", ".join(str(p) for p in paths) if len(parts) < 3 else f"{len(parts)} tokens files")


# ----------------------------------------------------------------------------- all inputs


@dataclass(eq=False)
class DashboardData:
    """What the dashboards draw from (module doc). ``tokenizer`` and ``metrics`` are None for a
    dataset alone; ``dataset`` is None for a checkpoint given without one."""

    source: Path
    tokenizer: object = None  # spinlock_core.tokenizer.api.Tokenizer
    metrics: dict | None = None
    history: dict | None = None
    dataset: DatasetView | None = None
    tokens_files: tuple[Path, ...] = ()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_checkpoint(cls, ckpt_dir: Path | str, dataset: Path | str | None = None,
                        tokens: Path | str | list | tuple | None = None) -> "DashboardData":
        """A tokenizer checkpoint folder, optionally with a dataset (per-category validation error,
        the data correlation, tokens and the dataset dashboard) and tokens files (one path or a
        list, e.g. one per shard; else tokens are computed from the dataset).

        Raises:
            DashboardInputError: the folder is not a loadable checkpoint, the dataset is not a
                Spinlock dataset, or a tokens file is missing.
        """
        from ..tokenizer import checkpoint as ck
        from ..tokenizer.api import Tokenizer

        folder = Path(ckpt_dir)
        try:
            tok = Tokenizer.load(folder)
            metrics = json.loads((folder / ck.METRICS).read_text())
            history = json.loads((folder / ck.HISTORY).read_text())
        except (ValueError, OSError, KeyError) as e:  # CheckpointError is a ValueError
            raise DashboardInputError(str(e)) from None
        view = DatasetView.open(dataset) if dataset is not None else None
        files = () if tokens is None else tuple(Path(t) for t in ([tokens] if isinstance(tokens, (str, Path)) else tokens))
        for p in files:
            if not p.is_file():
                raise DashboardInputError(f"{p}: no such tokens file")
        return cls(source=folder, tokenizer=tok, metrics=metrics, history=history, dataset=view, tokens_files=files)

    @classmethod
    def from_dataset(cls, path: Path | str) -> "DashboardData":
        """A dataset alone (the dataset dashboard).

        Raises:
            DashboardInputError: not a Spinlock dataset.
        """
        return cls(source=Path(path), dataset=DatasetView.open(path))

    @classmethod
    def load(cls, source: Path | str, dataset: Path | str | None = None, tokens=None) -> "DashboardData":
        """A checkpoint folder or a dataset file, told apart by their content.

        Raises:
            DashboardInputError: neither (the message names the path), or a dataset given twice.
        """
        p = Path(source)
        if is_checkpoint(p):
            return cls.from_checkpoint(p, dataset=dataset, tokens=tokens)
        if is_dataset(p):
            if dataset is not None or tokens is not None:
                raise DashboardInputError(f"{p} is a dataset: --dataset and --tokens go with a checkpoint folder")
            return cls.from_dataset(p)
        what = "no such file or folder" if not p.exists() else (
            "a folder without tokenizer.json" if p.is_dir() else "not a Spinlock dataset (HDF5)")
        raise DashboardInputError(f"{p}: neither a tokenizer checkpoint folder nor a Spinlock dataset ({what})")

    # ------------------------------------------------------------------ what can be drawn

    @property
    def has_tokens(self) -> bool:
        return self.tokenizer is not None and (bool(self.tokens_files) or self.dataset is not None)

    def available(self) -> list[str]:
        """The dashboards these inputs allow, in drawing order."""
        out = []
        if self.tokenizer is not None:
            out += ["engineering", "topological", "semantic"]
            if self.has_tokens:
                out.append("tokens")
        if self.dataset is not None:
            out.append("dataset")
        return out

    # ------------------------------------------------------------------ derived on first use

    @cached_property
    def model_input(self) -> ModelInput | None:
        """The tokenizer's input of the dataset (None without tokenizer or dataset); the validation
        split is the checkpoint's (:func:`spinlock_core.tokenizer.split.validation_mask` keyed by
        operator index), diverged operators excluded as in training."""
        if self.tokenizer is None or self.dataset is None:
            return None
        from ..tokenizer.data import FeatureFile, TokenizerDataError
        from ..tokenizer.split import validation_mask

        tok, d = self.tokenizer, self.dataset
        try:
            x = tok.features(FeatureFile(d.path))
        except TokenizerDataError as e:
            raise DashboardInputError(str(e)) from None
        split = tok.manifest.get("split") or {}
        cfg = tok.config.cleaning
        frac = split.get("validation_fraction", cfg.validation_fraction)
        seed = split.get("seed", cfg.split_seed)
        val = validation_mask(d.operator_index, frac, seed) & ~d.diverged
        return ModelInput(x=x, val_mask=val, diverged=d.diverged, dataset=d.path)

    @cached_property
    def tokens(self) -> TokenTable | None:
        """Tokens from the tokens files, else computed from :attr:`model_input` exactly as
        :meth:`Tokenizer.tokenize` does (the pipeline's transform, then the model in eval mode)."""
        if self.tokenizer is None:
            return None
        if self.tokens_files:
            return TokenTable.read(self.tokens_files, self.tokenizer.checkpoint_id)
        if self.model_input is None:
            return None
        import torch

        model, x = self.tokenizer.model, self.model_input.x
        with torch.inference_mode():
            parts = [model.tokenize(torch.from_numpy(x[i:i + 8192])).numpy() for i in range(0, x.shape[0], 8192)]
        t = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, len(self.tokenizer.codebook_sizes)), np.int64)
        d = self.dataset
        return TokenTable(t, d.ic_types, d.policies, d.diverged, d.operator_index, source=f"computed from {d.path.name}")
