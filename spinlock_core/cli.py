"""The ``spinlock`` command: thin wrappers around library calls.

    spinlock validate CONFIG...      experiment or tokenizer YAMLs (a file whose top-level keys
                                     are tokenizer sections - families, cleaning, model, training -
                                     and no experiment section is a tokenizer config); exit 0 with
                                     one OK line per file; exit 2 when any file is invalid, with
                                     one `FILE: field.path: reason` line (stderr) for every problem
                                     of every file
    spinlock inspect DATASET.h5      groups, shapes, dtypes, attributes, per-feature NaN counts
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, ExperimentConfig, TokenizerConfig, load_config

__all__ = ["main"]


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spinlock", description="Spinlock: random neural-operator datasets.")
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate experiment and tokenizer configs")
    v.add_argument("configs", nargs="+", type=Path)
    i = sub.add_parser("inspect", help="describe a Spinlock HDF5 file")
    i.add_argument("dataset", type=Path)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    a = ap.parse_args(argv)
    if a.command == "validate":
        return _validate(a.configs)
    return _inspect(a.dataset, a.json)


if __name__ == "__main__":
    sys.exit(main())
