"""Tokenizer benchmark: prints one JSON object.

* seconds per 1,000 optimizer steps of the VQ-VAE at the config's batch size (production: 512),
  and the same for an identical model whose quantizers are replaced by the identity; their ratio is
  the cost of quantization (aim <= 2x);
* tokenization throughput of a saved checkpoint on a dataset, in operators per second (the whole
  path: reading HDF5, cleaning, encoders, VQ), and of the VQ-VAE alone on the in-memory matrix;
* the parameter count of the VQ-VAE and of the family encoders.

The matrix is the real tokenizer input of ``--dataset`` (its feature pipeline is fitted first,
which pre-trains the family encoders) or, with ``--synthetic``, a random low-rank matrix of the
same width.

    python benchmarks/tokenizer.py [--dataset D.h5] [--config configs/vqvae/production.yaml]
                                   [--steps 300] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock_core.config import load_tokenizer_config  # noqa: E402
from spinlock_core.tokenizer.categories import discover_categories  # noqa: E402
from spinlock_core.tokenizer.training import train_vqvae  # noqa: E402

DEFAULT_DATASET = ROOT / ".spinlock" / "data" / "datasets" / "tokenizer_4k.h5"


def _matrix(args, cfg):
    if args.checkpoint and not args.synthetic:  # the checkpoint's own pipeline: no re-fitting
        from spinlock_core.tokenizer.api import Tokenizer
        from spinlock_core.tokenizer.data import FeatureFile
        from spinlock_core.tokenizer.split import validation_mask

        tok = Tokenizer.load(args.checkpoint)
        src = FeatureFile(args.dataset)
        x = tok.features(src)
        c = tok.config.cleaning
        val = validation_mask(src.metadata()["operator_index"], c.validation_fraction, c.split_seed)
        return x[~val], x[val], f"{args.dataset} through {args.checkpoint}", {"pipeline_seconds": None,
                                                                              "encoders": tok.pipeline}
    if args.synthetic or not Path(args.dataset).exists():
        rng = np.random.default_rng(0)
        n, f = 4096, 180
        z = rng.standard_normal((n, 24))
        x = (z @ rng.standard_normal((24, f)) + 0.1 * rng.standard_normal((n, f))).astype(np.float32)
        x = (x - x.mean(0)) / x.std(0)
        val = np.arange(n) % 10 == 0
        return x[~val], x[val], "synthetic", None
    from spinlock_core.tokenizer.train import prepare_tokenizer_input

    t0 = time.perf_counter()
    inp = prepare_tokenizer_input(args.dataset, cfg, device="cpu")
    p = inp.prepared
    return p.x[p.train_rows], p.x[p.val_rows], str(args.dataset), {"pipeline_seconds": time.perf_counter() - t0,
                                                                   "encoders": inp.pipeline}


def _steps_time(x_train, x_val, assignment, cfg, steps: int, quantize: bool) -> tuple[float, object]:
    t = cfg.training.model_copy(update={"max_steps": steps, "warmup_steps": min(cfg.training.warmup_steps, steps - 1),
                                        "val_every_steps": steps, "early_stopping_patience": 0,
                                        "dead_code_reset_interval": min(cfg.training.dead_code_reset_interval, steps),
                                        "device": "cpu"})
    res = train_vqvae(x_train, x_val, assignment, cfg.model, t, quantize=quantize)
    return res.seconds, res.model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--config", default=str(ROOT / "configs" / "vqvae" / "production.yaml"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint to time tokenization end to end")
    ap.add_argument("--synthetic", action="store_true")
    a = ap.parse_args(argv)
    cfg = load_tokenizer_config(a.config)
    x_train, x_val, source, extra = _matrix(a, cfg)
    cats = discover_categories(x_train, [f"c{j}" for j in range(x_train.shape[1])], cfg.model.num_categories,
                               cfg.model.min_category_size)
    sec_q, model = _steps_time(x_train, x_val, cats.assignment, cfg, a.steps, True)
    sec_id, _ = _steps_time(x_train, x_val, cats.assignment, cfg, a.steps, False)
    x_all = np.concatenate([x_train, x_val])
    with torch.inference_mode():
        model.tokenize(torch.from_numpy(x_all[:512]))
        t0 = time.perf_counter()
        model.tokenize(torch.from_numpy(x_all))
        vq_rate = x_all.shape[0] / (time.perf_counter() - t0)
    out = {
        "source": source, "config": a.config, "torch_threads": torch.get_num_threads(),
        "batch_size": cfg.training.batch_size, "steps_timed": a.steps,
        "feature_columns": int(x_train.shape[1]), "num_categories": cats.num_categories,
        "seconds_per_1000_steps": 1000 * sec_q / a.steps,
        "seconds_per_1000_steps_identity_quantizer": 1000 * sec_id / a.steps,
        "quantization_cost_ratio": sec_q / sec_id,
        "vqvae_parameters": int(sum(p.numel() for p in model.parameters())),
        "vqvae_tokenize_ops_per_second": vq_rate,
        "note": "train seconds include one validation round and the k-means initialisation of the codebooks",
    }
    if extra is not None:
        if extra["pipeline_seconds"] is not None:
            out["pipeline_seconds"] = extra["pipeline_seconds"]
        out["encoder_parameters"] = {s.name: int(sum(p.numel() for p in s.encoder.parameters()))
                                     for s in extra["encoders"].families}
    if (a.checkpoint or extra is not None) and not a.synthetic:
        from spinlock_core.tokenizer.api import Tokenizer

        ckpt = a.checkpoint
        if ckpt is None:  # a short training of the real pipeline, to time tokenization end to end
            from spinlock_core.tokenizer.train import train_on_prepared, prepare_tokenizer_input

            tmp = tempfile.mkdtemp()
            short = cfg.model_copy(update={"training": cfg.training.model_copy(update={
                "max_steps": 50, "warmup_steps": 5, "val_every_steps": 50, "dead_code_reset_interval": 50,
                "device": "cpu"})})
            for s in short.families.values():
                if s.pretrain is not None:
                    s.pretrain = s.pretrain.model_copy(update={"steps": 20})
            train_on_prepared(prepare_tokenizer_input(a.dataset, short), short, Path(tmp) / "ck")
            ckpt = Path(tmp) / "ck"
        tok = Tokenizer.load(ckpt)
        t0 = time.perf_counter()
        n = tok.tokenize(a.dataset).shape[0]
        out["tokenize_end_to_end_ops_per_second"] = n / (time.perf_counter() - t0)
        out["tokenize_checkpoint"] = str(ckpt)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
