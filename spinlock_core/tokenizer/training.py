"""Training of the categorical hierarchical VQ-VAE (SPEC 9) in optimizer steps.

Adam with a linear warm-up and a cosine decay to 0 at ``max_steps``; validation every
``val_every_steps`` (eval mode) with early stopping on the validation reconstruction error and
the best weights restored; codes unused since the last reset re-seeded every
``dead_code_reset_interval`` steps (:meth:`CategoricalVQVAE.reseed_codes`), on top of the
library's own expiry of codes whose EMA use falls below ``threshold_ema_dead_code``.

Randomness: the model is built and trained inside ``torch.random.fork_rng`` with the global seed
set from ``seed_int(seed, "tokenizer", 2)``, because the library's k-means initialisation and code
expiry draw from the global RNG; batches come from a generator seeded with
``seed_int(seed, "tokenizer", 3)``, re-seeding draws from ``seed_int(seed, "tokenizer", 4)``. Two
CPU runs with one seed give identical weights, and the caller's RNG state is left as it was.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from spinlock_core.config.tokenizer import DEAD_CODE_FRACTION
from spinlock_core.devices import resolve_device
from spinlock_core.seeding import seed_int
from spinlock_core.tokenizer import losses
from spinlock_core.tokenizer.metrics import mean_utilization
from spinlock_core.tokenizer.model import CategoricalVQVAE

__all__ = ["LOSS_TERMS", "TrainResult", "lr_factor", "train_vqvae"]

logger = logging.getLogger(__name__)

#: loss term -> the ``TrainingConfig`` weight that multiplies it
LOSS_TERMS = {
    "reconstruction": "reconstruction_weight",
    "vq": "vq_weight",
    "orthogonality": "orthogonality_weight",
    "informativeness": "informativeness_weight",
    "topographic": "topo_weight",
}


@dataclass
class TrainResult:
    """``model`` in eval mode on the CPU with the best weights; ``history`` one record per
    validation round; ``best_step`` the step of the best validation loss."""

    model: CategoricalVQVAE
    history: list[dict] = field(default_factory=list)
    best_step: int = 0
    stopped_early: bool = False
    steps_run: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    dead_codes_reset: int = 0


def lr_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): ``(step + 1) / warmup``
    during the warm-up, then ``(1 + cos(pi * (step - warmup) / (max_steps - warmup))) / 2``,
    which reaches 0 at ``step = max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _array(x, what: str) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N, F], got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf ({int((~np.isfinite(a)).sum())} entries); clean it first")
    return a.astype(np.float32)


def _validate(x_train, x_val, assignment, train_cfg):
    xt, xv = _array(x_train, "x_train"), _array(x_val, "x_val")
    a = np.asarray(assignment)
    if a.ndim != 1:
        raise ValueError(f"assignment must be 1-D [F], got shape {a.shape}")
    if not xt.shape[1] == xv.shape[1] == a.shape[0]:
        raise ValueError(f"feature counts differ: x_train has {xt.shape[1]}, x_val {xv.shape[1]}, assignment {a.shape[0]}")
    if xt.shape[0] < 3:
        raise ValueError(f"x_train needs at least 3 rows (batch statistics of the loss terms), got {xt.shape[0]}")
    if xv.shape[0] < 1:
        raise ValueError("x_val is empty")
    if train_cfg.topo_weight > 0 and train_cfg.topo_samples == 2:
        raise ValueError("topo_samples = 2 gives one distance, whose correlation is undefined; use >= 3")
    return xt, xv, a


@contextmanager
def _private_rng(seed: int, device: torch.device):
    """Global RNG seeded with ``seed`` inside, the caller's state restored after (CPU, and the
    training CUDA device only; ``torch.manual_seed`` would also queue a seed for every GPU)."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


def _loss_terms(out: dict, xb: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
    zero = out["reconstruction"].new_zeros(())
    terms = {"reconstruction": losses.reconstruction_loss(xb, out["reconstruction"]),
             "vq": losses.vq_loss(out["commit_losses"])}
    emb = out["embeddings"]
    rows = cfg.orthogonality_samples or 256  # the batch is a random draw: its first rows are too
    terms["orthogonality"] = (losses.orthogonality_loss([e[:rows] for e in emb], cfg.orthogonality_target)
                              if cfg.orthogonality_weight else zero)
    terms["informativeness"] = losses.informativeness_loss(emb) if cfg.informativeness_weight else zero
    terms["topographic"] = (losses.topographic_loss(xb, torch.cat(emb, dim=1), cfg.topo_samples)
                            if cfg.topo_weight and xb.shape[0] >= 3 else zero)
    terms["total"] = sum(getattr(cfg, w) * terms[t] for t, w in LOSS_TERMS.items())
    return terms


def _evaluate(model: CategoricalVQVAE, xv: torch.Tensor, cfg, chunk: int) -> dict:
    """Validation in eval mode on chunks of ``chunk`` rows (batch statistics as in training)."""
    with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
        model.eval()
        sums: dict[str, float] = {}
        tokens = []
        for start in range(0, xv.shape[0], chunk):
            xb = xv[start:start + chunk]
            out = model(xb)
            terms = _loss_terms(out, xb, cfg) if xb.shape[0] >= 3 else {
                "reconstruction": losses.reconstruction_loss(xb, out["reconstruction"]), "vq": out["commit_loss"]}
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * xb.shape[0]
            if out["tokens"] is not None:
                tokens.append(out["tokens"].cpu())
        model.train()
        rec = sums["reconstruction"] / xv.shape[0]
        rec_round = {f"val_{k}": v / xv.shape[0] for k, v in sums.items() if k not in ("reconstruction", "total")}
        util = mean_utilization(torch.cat(tokens).numpy(), model.token_sizes) if tokens else float("nan")
        return {"val_loss": rec, "val_quality": 1.0 - rec, "val_utilization": util, **rec_round}


def train_vqvae(
    x_train, x_val, assignment, model_cfg, train_cfg, *, device=None,
    progress: Callable[[int, int, dict], None] | None = None, log=None, quantize: bool = True,
) -> TrainResult:
    """Train a :class:`CategoricalVQVAE` on ``x_train [N, F]``, validating on ``x_val [Nv, F]``
    (both cleaned and z-scored, float), with ``assignment [F]`` the category of every column.

    Args:
        model_cfg, train_cfg: ``VQModelConfig`` and ``TrainingConfig``.
        device: None -> ``resolve_device(train_cfg.device)``.
        progress: called as ``progress(step, max_steps, record)`` after every validation round.
        log: logger-like with ``.info`` / ``.warning`` (e.g. Dagster's ``context.log``); default
            the module logger. One line per validation round.
        quantize: False trains without quantizers (a benchmark of their cost).

    Batches of ``min(batch_size, N)`` rows are drawn without replacement from a permutation per
    epoch (an incomplete tail is skipped, so every batch has the same size).

    Raises:
        ValueError: differing feature counts, fewer than 3 training rows, an empty validation
            split, NaN or inf in the inputs, invalid ``assignment``, ``topo_samples = 2``.
        RuntimeError: every validation loss was NaN or inf (training diverged).
    """
    log = log or logger
    cfg = train_cfg
    xt_np, xv_np, a = _validate(x_train, x_val, assignment, cfg)
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    b = min(cfg.batch_size, xt_np.shape[0])
    t0 = time.perf_counter()
    with _private_rng(seed_int(cfg.seed, "tokenizer", 2), device):
        model = CategoricalVQVAE.from_config(a, model_cfg, quantize=quantize).to(device)
        k0 = max(s[0] for s in model.codebook_sizes)
        if quantize and model_cfg.threshold_ema_dead_code > DEAD_CODE_FRACTION * b / k0:
            log.warning(f"threshold_ema_dead_code {model_cfg.threshold_ema_dead_code} exceeds {DEAD_CODE_FRACTION} * "
                        f"batch {b} / K0 {k0}: codes in use may be expired")
        xt = torch.as_tensor(xt_np, device=device)
        xv = torch.as_tensor(xv_np, device=device)
        batch_gen = torch.Generator(device=device).manual_seed(seed_int(cfg.seed, "tokenizer", 3))
        reset_gen = torch.Generator(device=device).manual_seed(seed_int(cfg.seed, "tokenizer", 4))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps))
        forward = model
        if cfg.use_torch_compile:
            forward = torch.compile(model)

        offsets = torch.as_tensor(np.cumsum([0, *model.token_sizes])[:-1], device=device) if quantize else None
        used = torch.zeros(sum(model.token_sizes), dtype=torch.bool, device=device) if quantize else None
        perm, pos = torch.randperm(xt.shape[0], generator=batch_gen, device=device), 0
        result = TrainResult(model=model, device=str(device))
        best_loss, best_state, stale, resets_round = math.inf, None, 0, 0
        running: dict[str, torch.Tensor] = {}
        n_running = 0
        bar = tqdm(total=cfg.max_steps, disable=None, desc="tokenizer", unit="step", leave=False)
        model.train()
        try:
            for step in range(cfg.max_steps):
                if pos + b > xt.shape[0]:
                    perm, pos = torch.randperm(xt.shape[0], generator=batch_gen, device=device), 0
                xb = xt[perm[pos:pos + b]]
                pos += b
                if step == 0 and forward is not model:
                    forward = _first_compiled_step(forward, model, xb, cfg, log)
                out = forward(xb)
                terms = _loss_terms(out, xb, cfg)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                sched.step()
                for k, v in terms.items():
                    running[k] = running.get(k, 0.0) + v.detach()
                n_running += 1
                if used is not None:
                    used[(out["tokens"] + offsets).reshape(-1)] = True
                    if cfg.dead_code_reset_interval and (step + 1) % cfg.dead_code_reset_interval == 0:
                        n = model.reseed_codes(xb, ~used, generator=reset_gen)
                        resets_round += n
                        result.dead_codes_reset += n
                        used.zero_()
                bar.update(1)
                if (step + 1) % cfg.val_every_steps and step + 1 != cfg.max_steps:
                    continue
                record = {"step": step + 1, "lr": cfg.learning_rate * lr_factor(step, cfg.warmup_steps, cfg.max_steps)}
                record.update({f"train_{'loss' if k == 'total' else k}": float(v) / n_running for k, v in running.items()})
                record.update(_evaluate(model, xv, cfg, b))
                record["dead_codes_reset"] = resets_round
                record["seconds"] = time.perf_counter() - t0
                result.history.append(record)
                running, n_running, resets_round = {}, 0, 0
                if record["val_loss"] < best_loss:
                    best_loss, result.best_step, stale = record["val_loss"], step + 1, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                bar.set_postfix(loss=f"{record['train_loss']:.4g}", val_q=f"{record['val_quality']:.4f}")
                log.info(f"tokenizer step {step + 1}/{cfg.max_steps}: loss {record['train_loss']:.5g}, val quality "
                         f"{record['val_quality']:.4f}, val utilization {record['val_utilization']:.3f}, lr {record['lr']:.3g}")
                if progress is not None:
                    progress(step + 1, cfg.max_steps, record)
                if cfg.early_stopping_patience and stale >= cfg.early_stopping_patience:
                    result.stopped_early = True
                    log.info(f"early stop at step {step + 1}: no better validation loss for {stale} rounds "
                             f"(best {best_loss:.5g} at step {result.best_step})")
                    break
        finally:
            bar.close()
        result.steps_run = step + 1
        if best_state is None:
            raise RuntimeError("training diverged: every validation loss was NaN or inf")
        model.load_state_dict(best_state)
    result.model = model.to("cpu").eval()
    result.seconds = time.perf_counter() - t0
    return result


def _first_compiled_step(compiled, model, xb, cfg, log):
    """Run the compiled forward and backward once; on failure restore the weights, buffers and RNG
    it touched, warn, and return the eager model (compilation is lazy: it fails at the first call)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(xb.device) if xb.is_cuda else None

    def restore():
        model.load_state_dict(state)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, xb.device)

    try:
        losses_ = _loss_terms(compiled(xb), xb, cfg)["total"]
        torch.autograd.grad(losses_, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    except Exception as e:  # noqa: BLE001 -- any compiler failure falls back to eager
        restore()
        msg = f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training without compilation"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
        return model
    restore()
    return compiled
