"""The ``spinlock`` command: thin wrappers around library calls.

    spinlock validate CONFIG...      experiment or tokenizer YAMLs (a file whose top-level keys
                                     are tokenizer sections - families, cleaning, model, training -
                                     and no experiment section is a tokenizer config); exit 0 with
                                     one OK line per file; exit 2 when any file is invalid, with
                                     one `FILE: field.path: reason` line (stderr) for every problem
                                     of every file
    spinlock inspect DATASET.h5      groups, shapes, dtypes, attributes, per-feature NaN counts
    spinlock train-tokenizer DATASET.h5 --config configs/vqvae/X.yaml --out CHECKPOINT_DIR
                                     train the behavioural tokenizer; prints the metrics summary
    spinlock tokenize CHECKPOINT_DIR DATASET.h5 --out tokens.h5
                                     tokens [N, 3 C] with operator indices and the checkpoint's id
    spinlock dashboards CHECKPOINT_DIR|DATASET.h5 --out DIR [--dataset D.h5] [--tokens T.h5 ...]
                                     the PNG dashboards the inputs allow (SPEC 10); one line per PNG

Bad input (a missing file or family, a wrong column count, an invalid config) exits 2 with one
``spinlock: error: ...`` line naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, ExperimentConfig, TokenizerConfig, load_config

__all__ = ["build_parser", "run", "main"]


def _experiment_line(cfg: ExperimentConfig) -> str:
    tok = f", tokenizer {cfg.tokenizer.config}" if cfg.tokenizer is not None else ""
    return (
        f"{cfg.metadata.name}, {cfg.sampling.total_samples} operators, "
        f"{cfg.parameter_space.dim} parameters, {cfg.grid_size}x{cfg.grid_size}, "
        f"T={cfg.simulation.num_timesteps}, M={cfg.simulation.num_realizations}, {cfg.num_shards} shards{tok}"
    )


def _tokenizer_line(cfg: TokenizerConfig) -> str:
    fams = ", ".join(f"{name} ({fam.encoder})" for name, fam in cfg.families.items())
    m, t = cfg.model, cfg.training
    levels = f"levels {m.levels}" if m.levels else f"levels auto (codebook_scale {m.codebook_scale})"
    return f"tokenizer: {fams}; {levels}; {t.max_steps} steps, batch {t.batch_size}"


def _validate(paths: list[Path]) -> int:
    bad = 0
    for p in paths:
        try:
            cfg = load_config(p)
        except ConfigError as e:
            bad += 1
            for loc, msg in e.problems:
                sys.stderr.write(f"{p}: {loc}: {msg}\n" if loc else f"{p}: {msg}\n")
            continue
        line = _tokenizer_line(cfg) if isinstance(cfg, TokenizerConfig) else _experiment_line(cfg)
        sys.stdout.write(f"OK {p}: {line}\n")
    return 2 if bad else 0


def _inspect(path: Path, as_json: bool) -> int:
    from .storage.dataset import describe
    from .storage.shards import StorageError

    try:
        info = describe(path)
    except StorageError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return 0
    out = [f"{info['path']}"]
    for k, v in info["attrs"].items():
        if k == "config":
            continue
        out.append(f"  @{k} = {v}")
    width = max((len(d["path"]) for d in info["datasets"]), default=10)
    for d in info["datasets"]:
        shape = "[" + ", ".join(str(s) for s in d["shape"]) + "]"
        comp = f" {d['compression']}" if d["compression"] else ""
        out.append(f"  {d['path']:<{width}}  {shape:<24} {d['dtype']:<8}{comp}")
        for k, v in d["attrs"].items():
            out.append(f"      @{k} = {v}")
        if "nan_total" in d:
            if d["nan_total"] == 0:
                out.append("      NaN: none")
            else:
                per = ", ".join(f"{k}={v}" for k, v in list(d["nan_per_feature"].items())[:40])
                more = " ..." if len(d["nan_per_feature"]) > 40 else ""
                out.append(f"      NaN: {d['nan_total']} in {len(d['nan_per_feature'])} features: {per}{more}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _fail(msg: str) -> int:
    sys.stderr.write(f"spinlock: error: {msg}\n")
    return 2


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _train_tokenizer(dataset: Path, config: Path, out: Path, device: str | None, max_steps: int | None) -> int:
    from .tokenizer.checkpoint import CheckpointError
    from .tokenizer.data import TokenizerDataError
    from .tokenizer.train import train_tokenizer

    try:
        cfg = load_config(config)
    except ConfigError as e:
        for loc, msg in e.problems:
            sys.stderr.write(f"{config}: {loc}: {msg}\n" if loc else f"{config}: {msg}\n")
        return 2
    if not isinstance(cfg, TokenizerConfig):
        return _fail(f"{config} is an experiment config; --config takes a tokenizer config (configs/vqvae/*.yaml)")
    if max_steps is not None:
        t = cfg.training.model_dump()
        t["max_steps"] = max_steps
        for key in ("warmup_steps", "val_every_steps", "dead_code_reset_interval"):
            t[key] = min(t[key], max(max_steps - 1, 0) if key == "warmup_steps" else max_steps)
        try:
            cfg = cfg.model_copy(update={"training": type(cfg.training).model_validate(t)})
        except ValueError as e:
            return _fail(f"--max-steps {max_steps}: {e}")
    _logging()
    try:
        _, metrics = train_tokenizer(dataset, cfg, out, device=device, config_path=str(config))
    except (TokenizerDataError, CheckpointError) as e:
        return _fail(str(e))
    keys = ("quality", "noise_ceiling", "utilization", "utilization_train_mean", "per_level_quality",
            "ami_ic_type", "num_categories", "feature_columns", "training")
    sys.stdout.write(json.dumps({k: metrics[k] for k in keys} | {"checkpoint": str(out)}, indent=1) + "\n")
    return 0


def _tokenize(checkpoint: Path, dataset: Path, out: Path, device: str) -> int:
    from .tokenizer.api import Tokenizer
    from .tokenizer.checkpoint import CheckpointError
    from .tokenizer.data import FeatureFile, TokenizerDataError
    from .tokenizer.tokens_file import write_tokens

    _logging()
    try:
        tok = Tokenizer.load(checkpoint)
        source = FeatureFile(dataset)
        tokens = tok.tokenize(source, device=device)
        write_tokens(out, tokens, tok, source.metadata(), source=str(dataset))
    except (TokenizerDataError, CheckpointError) as e:
        return _fail(str(e))
    sys.stdout.write(f"{out}: {tokens.shape[0]} operators x {tokens.shape[1]} tokens "
                     f"({tok.num_categories} categories x 3 levels), checkpoint {tok.checkpoint_id[:12]}\n")
    return 0


def _dashboards(source: Path, out: Path, dataset: Path | None, tokens: list[Path] | None, dpi: float) -> int:
    from .dashboards import DashboardInputError, render_all
    from .tokenizer.checkpoint import CheckpointError
    from .tokenizer.data import TokenizerDataError

    _logging()
    if not 10 <= dpi <= 600:
        return _fail(f"--dpi must lie in [10, 600], got {dpi:g}")
    try:
        results = render_all(source, out, dataset=dataset, tokens=tokens or None, dpi=dpi)
    except (DashboardInputError, CheckpointError, TokenizerDataError) as e:
        return _fail(str(e))
    for name, r in results.items():
        sys.stdout.write(f"{r.path}: {name}, {r.size[0]}x{r.size[1]} px, {r.path.stat().st_size / 1024:.0f} KiB\n")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The ``spinlock`` parser and its subcommands (``spinlock_assets.cli`` adds the commands that
    need a Dagster instance, so this library stays Dagster-free)."""
    ap = argparse.ArgumentParser(prog="spinlock", description="Spinlock: random neural-operator datasets.")
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate experiment and tokenizer configs")
    v.add_argument("configs", nargs="+", type=Path)
    i = sub.add_parser("inspect", help="describe a Spinlock HDF5 file")
    i.add_argument("dataset", type=Path)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    t = sub.add_parser("train-tokenizer", help="train the behavioural tokenizer on a dataset")
    t.add_argument("dataset", type=Path)
    t.add_argument("--config", type=Path, required=True, help="tokenizer config (configs/vqvae/*.yaml)")
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="overrides training.device")
    t.add_argument("--max-steps", type=int, default=None, help="overrides training.max_steps")
    k = sub.add_parser("tokenize", help="tokenize a dataset with a trained checkpoint")
    k.add_argument("checkpoint", type=Path)
    k.add_argument("dataset", type=Path)
    k.add_argument("--out", type=Path, required=True, help="tokens file to write (HDF5)")
    k.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    d = sub.add_parser("dashboards", help="render the PNG dashboards of a checkpoint or a dataset")
    d.add_argument("source", type=Path, help="tokenizer checkpoint folder or Spinlock dataset (.h5)")
    d.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    d.add_argument("--dataset", type=Path, default=None, help="dataset for a checkpoint: validation error, "
                   "measured correlation, tokens and the dataset dashboard")
    d.add_argument("--tokens", type=Path, nargs="+", default=None, help="tokens file(s) of the checkpoint "
                   "(default: tokenize the dataset)")
    d.add_argument("--dpi", type=float, default=100.0)
    return ap, sub


def run(a: argparse.Namespace) -> int:
    """Run a parsed core command; returns the exit code."""
    if a.command == "validate":
        return _validate(a.configs)
    if a.command == "train-tokenizer":
        return _train_tokenizer(a.dataset, a.config, a.out, a.device, a.max_steps)
    if a.command == "tokenize":
        return _tokenize(a.checkpoint, a.dataset, a.out, a.device)
    if a.command == "inspect":
        return _inspect(a.dataset, a.json)
    if a.command == "dashboards":
        return _dashboards(a.source, a.out, a.dataset, a.tokens, a.dpi)
    raise ValueError(f"unknown command {a.command!r}")


def main(argv: list[str] | None = None) -> int:
    ap, _ = build_parser()
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
