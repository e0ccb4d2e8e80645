"""Autoencoder pre-training of a family's encoder, streamed chunk by chunk, then frozen (SPEC 8).

The family arrives as chunks (``[n, F]`` or ``[n, T', F]``, cleaned and normalised by the caller);
memory holds one chunk at a time, which is how TEMPORAL ``[N, T, 63]`` is read from HDF5.

Batching: each chunk is shuffled (an explicit ``torch.Generator``) and cut into batches of
``batch_size`` rows; the final partial batch of a chunk is dropped (the next pass reshuffles, so
every row is used), except that a chunk smaller than ``batch_size`` is one batch of its own. When
a pass ends, ``chunks()`` is called again, until exactly ``steps`` optimizer steps are done.

Optimizer: Adam, learning rate decayed from ``learning_rate`` to 0 on a cosine over ``steps``
(as the VQ-VAE's schedule, SPEC 9), loss MSE(decoder(encoder(x)), x).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...seeding import seed_int
from .encode import Chunks, as_rows, iter_chunks, resolve_device

__all__ = ["PretrainResult", "pretrain_autoencoder", "reconstruction_mse"]

log = logging.getLogger(__name__)

#: sub-streams of the "tokenizer" seeding stage drawn from the pre-training seed
_SHUFFLE, _GLOBAL = 0, 1


@dataclass
class PretrainResult:
    """``history``: ``{"step", "loss"}`` every ``log_every`` steps and at the last, the loss being the
    mean training MSE since the previous entry; ``final_train_loss``: the last entry's loss;
    ``val_loss``: MSE on the validation chunks (None without them); ``seconds``: wall time."""

    history: list[dict] = field(default_factory=list)
    final_train_loss: float = math.nan
    val_loss: float | None = None
    seconds: float = 0.0


def reconstruction_mse(encoder: nn.Module, decoder: nn.Module, chunks: Chunks, *, device="cpu",
                       batch_size: int = 1024) -> float | None:
    """MSE of ``decoder(encoder(x))`` to ``x`` over every element of one pass over ``chunks``
    (eval mode, no gradients); None when they hold no rows."""
    dev = resolve_device(device)
    encoder.to(dev).eval()
    decoder.to(dev).eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for chunk in iter_chunks(chunks):
            x = as_rows(chunk, "reconstruction_mse")
            for b0 in range(0, x.shape[0], batch_size):
                xb = x[b0:b0 + batch_size].to(dev)
                total += float(F.mse_loss(decoder(encoder(xb)), xb, reduction="sum"))
                count += xb.numel()
    return total / count if count else None


def _validate(encoder, chunks, steps, batch_size, learning_rate, log_every) -> None:
    if not getattr(encoder, "trained", False):
        raise ValueError(f"{type(encoder).__name__} has no weights to pre-train")
    if not callable(chunks):
        raise ValueError("chunks must be a zero-argument callable returning an iterable of arrays (called once per pass)")
    for name, v in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")


def _batches(chunks: Callable, batch_size: int, generator: torch.Generator, dev: torch.device, who: str):
    """Endless ``[b, ...]`` batches on ``dev``, one chunk in memory at a time (module docstring)."""
    while True:
        rows, it = 0, iter(chunks())
        try:
            for chunk in it:
                x = as_rows(chunk, who)
                n = x.shape[0]
                if n == 0:
                    continue
                rows += n
                x = x.to(dev)
                perm = torch.randperm(n, generator=generator).to(dev)
                stop = n - n % batch_size if n >= batch_size else n
                for b0 in range(0, stop, batch_size):
                    yield x[perm[b0:b0 + batch_size]]
                del x
        finally:  # a pass cut short by the last step releases its reader (an open HDF5 file) now
            getattr(it, "close", lambda: None)()
        if rows == 0:
            raise ValueError(f"{who}: a pass over chunks() gave no rows")


def pretrain_autoencoder(encoder: nn.Module, decoder: nn.Module, chunks: Callable, *, steps: int, batch_size: int,
                         learning_rate: float, seed: int, device: str | torch.device = "cpu",
                         val_chunks: Chunks | None = None, progress: Callable[[int, int], None] | None = None,
                         log_every: int = 100) -> PretrainResult:
    """Train ``encoder`` and ``decoder`` as an autoencoder of the rows of ``chunks`` for exactly
    ``steps`` optimizer steps (module docstring), then freeze the encoder (eval mode,
    ``requires_grad_(False)``); both stay on ``device``.

    Same ``seed`` -> same weights on the CPU (from the same initial weights). Shuffling uses its
    own generator; dropout draws from the global RNG, which is forked and seeded for the loop, so
    the caller's RNG state is unchanged.

    Args:
        chunks: zero-argument callable returning an iterable of float32 arrays, called per pass.
        val_chunks: the validation rows (callable or iterable), scored once at the end.
        progress: ``progress(done, total)`` after each step; by default a tqdm bar on stderr when it
            is a terminal (silent otherwise).
        log_every: steps between history entries and log lines.

    Raises:
        ValueError: an encoder without weights, a non-callable ``chunks``, a size < 1, a learning
            rate <= 0, a pass without rows, a non-finite chunk or one of the wrong shape.
    """
    _validate(encoder, chunks, steps, batch_size, learning_rate, log_every)
    name = type(encoder).__name__
    dev = resolve_device(device)
    t0 = time.perf_counter()
    result = PretrainResult()
    bar = None
    if progress is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"pretrain {name}", unit="step", disable=None, leave=False)
        progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    forked = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.default_generator.manual_seed(seed_int(seed, "tokenizer", _GLOBAL))
        if dev.type == "cuda":
            with torch.cuda.device(forked[0]):
                torch.cuda.manual_seed(seed_int(seed, "tokenizer", _GLOBAL))
        shuffle = torch.Generator().manual_seed(seed_int(seed, "tokenizer", _SHUFFLE))
        encoder.to(dev).train()
        decoder.to(dev).train()
        opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        running, since = torch.zeros((), device=dev), 0
        batches = _batches(chunks, int(batch_size), shuffle, dev, f"pretrain {name}")
        for step in range(1, steps + 1):
            xb = next(batches)
            loss = F.mse_loss(decoder(encoder(xb)), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.detach()
            since += 1
            if step % log_every == 0 or step == steps:
                mean = float(running) / since  # the only host sync, every log_every steps
                result.history.append({"step": step, "loss": mean})
                log.info("pretrain %s: step %d/%d, train MSE %.5f", name, step, steps, mean)
                running.zero_()
                since = 0
            progress(step, steps)
        batches.close()
    if bar is not None:
        bar.close()
    result.final_train_loss = result.history[-1]["loss"]
    if val_chunks is not None:
        result.val_loss = reconstruction_mse(encoder, decoder, val_chunks, device=dev, batch_size=max(int(batch_size), 1024))
    encoder.eval().requires_grad_(False)
    decoder.eval()
    result.seconds = time.perf_counter() - t0
    return result
