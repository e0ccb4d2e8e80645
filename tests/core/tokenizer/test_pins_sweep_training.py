"""Pins of the VQ-VAE training loop and its loss terms (SPEC 9) on tiny synthetic inputs.

What is pinned:

- ``training.train_vqvae`` against a step-by-step re-implementation written from its docstring
  (seeded model, batch and re-seeding generators, epoch permutations, Adam with the warm-up/cosine
  factor, weighted loss terms, dead-code re-seeding, two validation rounds, the best weights):
  the final weights and every value of every history record;
- the loop's bookkeeping with a scripted validation (``training._evaluate`` replaced): early
  stopping, ties, the best round's weights, log lines, ``progress`` calls, divergence, the
  dead-code threshold warning at its boundary, the device argument, the compiled-forward probe;
- ``training._evaluate``: chunking with a tail shorter than 3 rows, the keys and values it returns;
- ``training._loss_terms``: every term, the weights, the sample sizes and the 3-row boundary;
- ``training._validate`` / ``_array`` / ``lr_factor``: messages naming the field, boundaries;
- ``losses``: the orthogonality and topographic terms against numpy re-implementations (with the
  ``STD_EPS`` of the batch z-score), below-1 distances and correlations, and every message.

Shapes: ``x [N, F]`` with ``F = 6`` columns in 3 interleaved categories, embeddings ``[B, D]``.
"""

from __future__ import annotations

import logging
import math
import re
import time

import numpy as np
import pytest
import torch

from spinlock_core.config.tokenizer import TrainingConfig, VQModelConfig
from spinlock_core.seeding import seed_int
from spinlock_core.tokenizer import losses, training
from spinlock_core.tokenizer.model import CategoricalVQVAE

ASSIGNMENT = np.array([0, 1, 0, 1, 2, 2])
MODEL = VQModelConfig(group_embedding_dim=3, group_hidden_dim=5, decoder_hidden_dims=[7], levels=[8, 4, 2],
                      kmeans_init=False, threshold_ema_dead_code=0.0)
WEIGHTS = {"reconstruction_weight": 1.5, "vq_weight": 0.7, "orthogonality_weight": 0.3,
           "informativeness_weight": 0.2, "topo_weight": 0.4}
TERMS = ["reconstruction", "vq", "orthogonality", "informativeness", "topographic"]


def _data(n_train=16, n_val=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_val, 6)).astype(np.float32)
    return x[:n_train], x[n_train:]


def _cfg(**kw) -> TrainingConfig:
    args = {"seed": 5, "batch_size": 8, "max_steps": 6, "warmup_steps": 2, "val_every_steps": 3,
            "dead_code_reset_interval": 3, "learning_rate": 0.02, "orthogonality_samples": 6, "topo_samples": 5,
            "orthogonality_target": 0.05, "device": "cpu", **WEIGHTS}
    args.update(kw)
    return TrainingConfig(**args)


class _Log:
    """A logger-like recorder (``.info`` / ``.warning``)."""

    def __init__(self):
        self.infos, self.warnings = [], []

    def info(self, msg):
        self.infos.append(msg)

    def warning(self, msg):
        self.warnings.append(msg)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------ reference training loop

def _ref_terms(model_out, xb, cfg):
    """The weighted loss of one batch, written from the losses module doc (terms in LOSS_TERMS order)."""
    emb = model_out["embeddings"]
    t = {"reconstruction": losses.reconstruction_loss(xb, model_out["reconstruction"]),
         "vq": model_out["commit_losses"].sum(),
         "orthogonality": losses.orthogonality_loss([e[:cfg.orthogonality_samples] for e in emb],
                                                    cfg.orthogonality_target),
         "informativeness": losses.informativeness_loss(emb),
         "topographic": losses.topographic_loss(xb, torch.cat(emb, dim=1), cfg.topo_samples)}
    total = 0
    for name in TERMS:
        total = total + getattr(cfg, f"{'topo' if name == 'topographic' else name}_weight") * t[name]
    t["total"] = total
    return t


def _ref_val(model, xv, cfg):
    """Eval-mode validation of one chunk (the 5 validation rows fit one batch of 8)."""
    with torch.no_grad():
        model.eval()
        out = model(xv)
        t = _ref_terms(out, xv, cfg)
        tokens = out["tokens"].numpy()
        model.train()
    util = np.mean([np.unique(tokens[:, j]).size / k for j, k in enumerate(model.token_sizes)])
    rec = float(t["reconstruction"])
    return {"val_loss": rec, "val_quality": 1.0 - rec, "val_utilization": util,
            **{f"val_{k}": float(t[k]) for k in TERMS[1:]}}


def _reference(xt_np, xv_np, cfg):
    """``train_vqvae`` re-implemented step by step: returns (best weights, records)."""
    xt, xv = torch.from_numpy(xt_np), torch.from_numpy(xv_np)
    n, b = xt.shape[0], min(cfg.batch_size, xt.shape[0])
    records, best, best_loss = [], None, math.inf
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_int(cfg.seed, "tokenizer", 2))
        model = CategoricalVQVAE.from_config(ASSIGNMENT, MODEL)
        g_batch = torch.Generator().manual_seed(seed_int(cfg.seed, "tokenizer", 3))
        g_reset = torch.Generator().manual_seed(seed_int(cfg.seed, "tokenizer", 4))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        sizes = model.token_sizes
        offsets = torch.tensor(np.cumsum([0] + sizes)[:-1])
        used = torch.zeros(sum(sizes), dtype=torch.bool)
        perm, pos = torch.randperm(n, generator=g_batch), 0
        sums, steps, resets = {}, 0, 0
        model.train()
        for step in range(cfg.max_steps):
            if pos + b > n:
                perm, pos = torch.randperm(n, generator=g_batch), 0
            xb = xt[perm[pos:pos + b]]
            pos += b
            out = model(xb)
            t = _ref_terms(out, xb, cfg)
            factor = (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 0.5 * (
                1 + math.cos(math.pi * (step - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps)))
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * factor
            opt.zero_grad()
            t["total"].backward()
            opt.step()
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            steps += 1
            used[(out["tokens"] + offsets).reshape(-1)] = True
            if (step + 1) % cfg.dead_code_reset_interval == 0:
                resets += model.reseed_codes(xb, ~used, generator=g_reset)
                used[:] = False
            if (step + 1) % cfg.val_every_steps == 0:
                rec = {"step": step + 1, "lr": cfg.learning_rate * factor,
                       **{f"train_{'loss' if k == 'total' else k}": v / steps for k, v in sums.items()},
                       **_ref_val(model, xv, cfg), "dead_codes_reset": resets}
                records.append(rec)
                if rec["val_loss"] < best_loss:
                    best_loss, best = rec["val_loss"], _state(model)
                sums, steps, resets = {}, 0, 0
    return best, records


def test_train_vqvae_matches_a_step_by_step_reference(caplog):
    """Weights and every history value equal a re-implementation of the loop (2 rounds of 3 steps,
    an epoch of exactly 2 batches, warm-up, re-seeding, weighted terms); logs to the module logger."""
    xt, xv = _data()
    cfg = _cfg()
    ref_best, ref_records = _reference(xt, xv, cfg)
    caplog.set_level(logging.INFO, logger=training.logger.name)
    t0 = time.perf_counter()
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg)
    elapsed = time.perf_counter() - t0

    assert sum(rec["dead_codes_reset"] for rec in ref_records) > 0  # the re-seeding path ran
    assert r.steps_run == 6 and not r.stopped_early and r.device == "cpu"
    assert not r.model.training and next(r.model.parameters()).device.type == "cpu"
    assert r.best_step == ref_records[int(np.argmin([rec["val_loss"] for rec in ref_records]))]["step"]
    assert r.dead_codes_reset == sum(rec["dead_codes_reset"] for rec in ref_records)
    got = r.model.state_dict()
    assert got.keys() == ref_best.keys()
    for k in ref_best:
        torch.testing.assert_close(got[k], ref_best[k], rtol=1e-4, atol=1e-5, msg=k)
    assert len(r.history) == 2
    for rec, ref in zip(r.history, ref_records):
        seconds = rec.pop("seconds")
        assert 0.0 < seconds <= elapsed
        assert rec.keys() == ref.keys()
        for k in ref:
            assert rec[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-6), k
    assert 0.0 < r.seconds <= elapsed
    # lr of the round's last step: steps 2 (cosine at progress 0) and 5 (progress 3/4)
    assert r.history[0]["lr"] == pytest.approx(0.02)
    assert r.history[1]["lr"] == pytest.approx(0.02 * 0.5 * (1 - math.sqrt(0.5)))
    assert len(caplog.messages) == 2 and caplog.messages[0].startswith("tokenizer step 3/6: loss ")


# ----------------------------------------------------------------- loop bookkeeping, scripted validation

class _Scripted:
    """Stands in for ``_evaluate``: returns scripted validation losses, records its arguments and
    the weights it saw."""

    def __init__(self, losses_):
        self.losses, self.calls, self.states = list(losses_), [], []

    def __call__(self, model, xv, cfg, chunk):
        self.calls.append((model, xv.clone(), cfg, chunk, model.training))
        self.states.append(_state(model))
        v = self.losses[len(self.calls) - 1]
        return {"val_loss": v, "val_quality": 1.0 - v, "val_utilization": 0.125}


def test_early_stopping_ties_best_weights_logs_and_progress(monkeypatch):
    """Rounds every 2 steps with validation losses 3, 2, 2, 2.5: a tie is no improvement, patience 2
    stops at step 8 with the weights of step 4; one log line per round, then the early-stop line."""
    xt, xv = _data()
    script = _Scripted([3.0, 2.0, 2.0, 2.5, 1.0])
    monkeypatch.setattr(training, "_evaluate", script)
    cfg = _cfg(batch_size=32, max_steps=10, warmup_steps=0, val_every_steps=2, dead_code_reset_interval=0,
               early_stopping_patience=2, topo_samples=None, orthogonality_samples=None)
    log, calls = _Log(), []
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, log=log, progress=lambda *a: calls.append(a))
    assert r.stopped_early is True and r.steps_run == 8 and r.best_step == 4 and r.dead_codes_reset == 0
    assert [h["step"] for h in r.history] == [2, 4, 6, 8]
    assert [c[0] for c in calls] == [2, 4, 6, 8] and all(c[1] == 10 for c in calls)
    assert all(c[2] is h for c, h in zip(calls, r.history))
    # the evaluation sees the model in training mode, all of x_val and chunks of min(batch_size, N) = 16
    for model, xv_seen, c, chunk, was_training in script.calls:
        assert isinstance(model, CategoricalVQVAE) and c is cfg and chunk == 16 and was_training
        assert torch.equal(xv_seen, torch.from_numpy(xv))
    final = r.model.state_dict()
    assert all(torch.equal(final[k], script.states[1][k]) for k in final)
    assert not all(torch.equal(final[k], script.states[2][k]) for k in final)
    for h in r.history:
        assert set(h) == {"step", "lr", "train_loss", "train_reconstruction", "train_vq", "train_orthogonality",
                          "train_informativeness", "train_topographic", "val_loss", "val_quality",
                          "val_utilization", "dead_codes_reset", "seconds"}
        assert h["dead_codes_reset"] == 0
        assert h["lr"] == pytest.approx(0.02 * training.lr_factor(h["step"] - 1, 0, 10))
        # train_loss is the weighted sum of the mean terms (the loss is linear in them)
        weighted = sum(WEIGHTS[w] * h[f"train_{t}"] for t, w in training.LOSS_TERMS.items())
        assert h["train_loss"] == pytest.approx(weighted, rel=1e-5)
        assert h["train_topographic"] > 0 and h["train_informativeness"] > 0
    expected = [f"tokenizer step {h['step']}/10: loss {h['train_loss']:.5g}, val quality {h['val_quality']:.4f}, "
                f"val utilization 0.125, lr {h['lr']:.3g}" for h in r.history]
    assert log.infos == expected + ["early stop at step 8: no better validation loss for 2 rounds (best 2 at step 4)"]
    assert log.warnings == []


def test_last_round_runs_at_max_steps_and_patience_zero_never_stops(monkeypatch):
    """Rounds at multiples of val_every_steps and at max_steps; patience 0 trains to the end even
    when no round improves; re-seeding rounds count their codes."""
    xt, xv = _data()
    script = _Scripted([1.0, 2.0, 3.0])
    monkeypatch.setattr(training, "_evaluate", script)
    cfg = _cfg(max_steps=5, val_every_steps=2, dead_code_reset_interval=1, early_stopping_patience=0)
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, log=_Log())
    assert [h["step"] for h in r.history] == [2, 4, 5]
    assert r.steps_run == 5 and not r.stopped_early and r.best_step == 2
    assert r.dead_codes_reset == sum(h["dead_codes_reset"] for h in r.history) > 0


def test_every_validation_loss_nan_is_divergence(monkeypatch):
    """No round with a finite validation loss: RuntimeError naming the divergence."""
    xt, xv = _data()
    monkeypatch.setattr(training, "_evaluate", _Scripted([float("nan")] * 3))
    with pytest.raises(RuntimeError, match=r"^training diverged: every validation loss was NaN or inf$"):
        training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, _cfg(), log=_Log())


@pytest.mark.parametrize("threshold, quantize, warned", [(0.5, True, False), (0.75, True, True), (0.75, False, False)])
def test_dead_code_threshold_warning_boundary(monkeypatch, threshold, quantize, warned):
    """Warning when threshold_ema_dead_code > 0.25 * batch / K0 with batch min(40, N = 16) and the
    largest level-0 size K0 = 8 (limit 0.5 exactly: no warning); never without quantizers."""
    xt, xv = _data()
    monkeypatch.setattr(training, "_evaluate", _Scripted([1.0]))
    model_cfg = MODEL.model_copy(update={"threshold_ema_dead_code": threshold})
    cfg = _cfg(batch_size=40, max_steps=1, warmup_steps=0, val_every_steps=1, dead_code_reset_interval=0)
    log = _Log()
    training.train_vqvae(xt, xv, ASSIGNMENT, model_cfg, cfg, log=log, quantize=quantize)
    expect = ["threshold_ema_dead_code 0.75 exceeds 0.25 * batch 16 / K0 8: codes in use may be expired"]
    assert log.warnings == (expect if warned else [])


def test_device_argument_overrides_the_config(monkeypatch):
    """An explicit device wins over train_cfg.device (here 'cuda', which would need a GPU)."""
    xt, xv = _data()
    monkeypatch.setattr(training, "_evaluate", _Scripted([1.0]))
    cfg = _cfg(max_steps=1, warmup_steps=0, val_every_steps=1, dead_code_reset_interval=0, device="cuda")
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, device="cpu", log=_Log())
    assert r.device == "cpu" and r.steps_run == 1


def test_compiled_forward_is_probed_once_on_the_first_batch(monkeypatch):
    """With use_torch_compile the probe runs once, at step 0, on the first batch drawn (the first
    rows of the batch generator's permutation), and what it returns is the forward of every step."""
    xt, xv = _data()
    monkeypatch.setattr(training, "_evaluate", _Scripted([1.0]))
    compiled = object()
    monkeypatch.setattr(torch, "compile", lambda m: compiled)
    probes, forwards = [], []

    def probe(c, model, xb, cfg, log):
        probes.append((c, model, xb.clone(), cfg, log))

        def forward(x):
            forwards.append(x)
            return model(x)
        return forward

    monkeypatch.setattr(training, "_first_compiled_step", probe)
    cfg = _cfg(max_steps=3, warmup_steps=0, val_every_steps=3, dead_code_reset_interval=0, use_torch_compile=True)
    log = _Log()
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, log=log)
    assert len(probes) == 1 and len(forwards) == 3
    c, model, xb, cfg_seen, log_seen = probes[0]
    assert c is compiled and model is r.model and cfg_seen is cfg and log_seen is log
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed_int(5, "tokenizer", 3)))
    assert torch.equal(xb, torch.from_numpy(xt)[perm[:8]])
    assert torch.equal(forwards[0], xb)


# ----------------------------------------------------------------------------------- _evaluate

def _tiny_model(quantize=True):
    torch.manual_seed(2)
    model = CategoricalVQVAE.from_config(ASSIGNMENT, MODEL, quantize=quantize)
    return model


def test_evaluate_chunks_with_a_short_tail():
    """x_val [7, 6] in chunks of 3: two chunks with every term, a 1-row tail with reconstruction and
    vq only; each term is a row-weighted mean over all 7 rows; the model is left in training mode
    and its codebooks untouched (eval mode)."""
    model = _tiny_model()
    xv = torch.from_numpy(np.random.default_rng(3).normal(size=(7, 6)).astype(np.float32))
    cfg = _cfg()
    model.train()
    before = _state(model)
    got = training._evaluate(model, xv, cfg, 3)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    sums = dict.fromkeys(TERMS, 0.0)
    tokens = []
    with torch.no_grad():
        model.eval()
        for lo, hi in [(0, 3), (3, 6), (6, 7)]:
            xb = xv[lo:hi]
            out = model(xb)
            tokens.append(out["tokens"].numpy())
            sums["reconstruction"] += float(((xb - out["reconstruction"]) ** 2).mean()) * (hi - lo)
            sums["vq"] += float(out["commit_losses"].sum()) * (hi - lo)
            if hi - lo >= 3:
                t = _ref_terms(out, xb, cfg)
                for k in TERMS[2:]:
                    sums[k] += float(t[k]) * (hi - lo)
    tok = np.concatenate(tokens)
    util = np.mean([np.unique(tok[:, j]).size / k for j, k in enumerate(model.token_sizes)])
    assert set(got) == {"val_loss", "val_quality", "val_utilization", "val_vq", "val_orthogonality",
                        "val_informativeness", "val_topographic"}
    assert got["val_loss"] == pytest.approx(sums["reconstruction"] / 7, rel=1e-5)
    assert got["val_quality"] == pytest.approx(1.0 - sums["reconstruction"] / 7, rel=1e-5)
    assert got["val_utilization"] == pytest.approx(util, rel=1e-12)
    for k in TERMS[1:]:
        assert sums[k] > 0
        assert got[f"val_{k}"] == pytest.approx(sums[k] / 7, rel=1e-5), k


def test_evaluate_without_quantizers_and_with_only_short_chunks():
    """Chunks of 2 rows (all below 3): reconstruction and vq only; no tokens -> NaN utilization."""
    model = _tiny_model(quantize=False)
    xv = torch.from_numpy(np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32))
    got = training._evaluate(model, xv, _cfg(), 2)
    with torch.no_grad():
        rec = float(((xv - model.eval()(xv)["reconstruction"]) ** 2).mean())
    assert set(got) == {"val_loss", "val_quality", "val_utilization", "val_vq"}
    assert got["val_loss"] == pytest.approx(rec, rel=1e-5) and got["val_vq"] == 0.0
    assert math.isnan(got["val_utilization"])


# ---------------------------------------------------------------------------------- _loss_terms

def _out(b, seed=0, dims=(2, 3)):
    g = torch.Generator().manual_seed(seed)
    emb = [torch.randn(b, d, generator=g, dtype=torch.float64) for d in dims]
    return {"reconstruction": torch.randn(b, 4, generator=g, dtype=torch.float64),
            "commit_losses": torch.rand(2, 3, generator=g, dtype=torch.float64), "embeddings": emb}


def test_loss_terms_values_weights_and_sample_sizes():
    """Every term from its loss function on the rows it is given (orthogonality on the first
    orthogonality_samples rows, topography on the first topo_samples), total the weighted sum."""
    b = 9
    out = _out(b)
    xb = torch.randn(b, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    cfg = _cfg(batch_size=16, orthogonality_samples=5, topo_samples=4, orthogonality_target=0.01)
    t = training._loss_terms(out, xb, cfg)
    emb = out["embeddings"]
    expect = {"reconstruction": ((xb - out["reconstruction"]) ** 2).mean(), "vq": out["commit_losses"].sum(),
              "orthogonality": losses.orthogonality_loss([e[:5] for e in emb], 0.01),
              "informativeness": losses.informativeness_loss(emb),
              "topographic": losses.topographic_loss(xb[:4], torch.cat(emb, dim=1)[:4])}
    assert set(t) == set(TERMS) | {"total"}
    for k, v in expect.items():
        assert float(t[k]) == pytest.approx(float(v), rel=1e-12), k
        assert float(v) > 0
    total = (1.5 * expect["reconstruction"] + 0.7 * expect["vq"] + 0.3 * expect["orthogonality"]
             + 0.2 * expect["informativeness"] + 0.4 * expect["topographic"])
    assert float(t["total"]) == pytest.approx(float(total), rel=1e-12)


def test_loss_terms_default_orthogonality_rows_is_256():
    """orthogonality_samples None -> the first 256 rows of a 300-row batch."""
    out = _out(300, seed=1)
    xb = torch.randn(300, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cfg = _cfg(batch_size=300, orthogonality_samples=None, topo_samples=3, orthogonality_target=1e-6)
    t = training._loss_terms(out, xb, cfg)
    expect = losses.orthogonality_loss([e[:256] for e in out["embeddings"]], 1e-6)
    assert float(t["orthogonality"]) == pytest.approx(float(expect), rel=1e-12)
    for rows in (255, 257, 300):
        other = losses.orthogonality_loss([e[:rows] for e in out["embeddings"]], 1e-6)
        assert float(t["orthogonality"]) != pytest.approx(float(other), rel=1e-9)


def test_loss_terms_zero_weights_skip_terms_and_three_rows_is_enough():
    """A zero weight gives an exact 0 for its term; a batch of exactly 3 rows has a topographic term."""
    out = _out(3, seed=3)
    xb = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    cfg = _cfg(topo_samples=None, orthogonality_samples=None, orthogonality_target=1e-6)
    t = training._loss_terms(out, xb, cfg)
    assert float(t["topographic"]) == pytest.approx(float(losses.topographic_loss(xb, torch.cat(out["embeddings"], 1))))
    assert float(t["topographic"]) > 0
    zero = cfg.model_copy(update={"orthogonality_weight": 0.0, "informativeness_weight": 0.0, "topo_weight": 0.0})
    t = training._loss_terms(out, xb, zero)
    assert float(t["orthogonality"]) == 0.0 and float(t["informativeness"]) == 0.0 and float(t["topographic"]) == 0.0
    assert float(t["total"]) == pytest.approx(1.5 * float(t["reconstruction"]) + 0.7 * float(t["vq"]), rel=1e-12)


# ----------------------------------------------------------------------- _validate / _array / lr

def test_validate_messages_name_the_field():
    """Every refusal names the argument and the values it reports."""
    xt, xv = _data()
    cfg = _cfg()
    a = ASSIGNMENT
    cases = [
        ((xt, xv[0], a), r"^x_val must be 2-D \[N, F\], got shape \(6,\)$"),
        ((xt[None], xv, a), r"^x_train must be 2-D \[N, F\], got shape \(1, 16, 6\)$"),
        ((xt, xv.astype(bool), a), r"^x_val must be numeric, got dtype bool$"),
        ((xt, np.where(np.arange(6) < 2, np.inf, xv), a), r"^x_val contains NaN or inf \(10 entries\); clean it first$"),
        ((xt, xv, a[None]), r"^assignment must be 1-D \[F\], got shape \(1, 6\)$"),
        ((xt[:, :5], xv, a), r"^feature counts differ: x_train has 5, x_val 6, assignment 6$"),
        ((xt, xv[:, :4], a), r"^feature counts differ: x_train has 6, x_val 4, assignment 6$"),
        ((xt, xv, a[:5]), r"^feature counts differ: x_train has 6, x_val 6, assignment 5$"),
        ((xt[:2], xv, a), r"^x_train needs at least 3 rows \(batch statistics of the loss terms\), got 2$"),
        ((xt, xv[:0], a), r"^x_val is empty$"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            training._validate(*args, cfg)
    with pytest.raises(ValueError, match=r"^topo_samples = 2 gives one distance, whose correlation is undefined; "
                                         r"use >= 3$"):
        training._validate(xt, xv, a, cfg.model_copy(update={"topo_samples": 2}))


def test_validate_boundaries_and_conversions():
    """3 training rows and 1 validation row are enough; topo_samples 2 is fine with topo_weight 0 and
    topo_samples 3 with any weight; tensors (with a gradient) and integers become float32 arrays."""
    xt, xv = _data()
    cfg = _cfg()
    xt3, xv1, a = training._validate(xt[:3], xv[:1], list(ASSIGNMENT), cfg)
    assert xt3.shape == (3, 6) and xv1.shape == (1, 6) and a.tolist() == ASSIGNMENT.tolist()
    training._validate(xt, xv, ASSIGNMENT, cfg.model_copy(update={"topo_samples": 2, "topo_weight": 0.0}))
    training._validate(xt, xv, ASSIGNMENT, cfg.model_copy(update={"topo_samples": 3}))
    t = torch.tensor(xt, requires_grad=True)
    got, gv, _ = training._validate(t, np.arange(12).reshape(2, 6), ASSIGNMENT, cfg)
    assert got.dtype == np.float32 and gv.dtype == np.float32
    np.testing.assert_array_equal(got, xt)
    np.testing.assert_array_equal(gv, np.arange(12, dtype=np.float32).reshape(2, 6))
    assert training._array(np.ones((2, 3), np.float64), "x").dtype == np.float32


def test_lr_factor_clamps_after_max_steps_and_short_decays():
    """Past max_steps the factor stays 0; a one-step decay reaches 0 at its end."""
    assert training.lr_factor(150, 10, 110) == pytest.approx(0.0, abs=1e-15)
    assert training.lr_factor(310, 10, 110) == pytest.approx(0.0, abs=1e-15)
    assert training.lr_factor(1, 0, 1) == pytest.approx(0.0, abs=1e-15)
    assert training.lr_factor(3, 2, 4) == pytest.approx(0.5)
    assert training.lr_factor(1, 2, 4) == 1.0 and training.lr_factor(0, 4, 8) == 0.25


# ---------------------------------------------------------------------------------------- losses

def _np_rho(z1, z2):
    """RMS Pearson cross-correlation with the batch z-score's STD_EPS, directly (no Gram matrices)."""
    s = [(z - z.mean(0)) / np.sqrt(z.var(0) + 1e-4) for z in (z1, z2)]
    r = s[0].T @ s[1] / z1.shape[0]
    return np.sqrt(np.mean(r ** 2))


def test_orthogonality_two_categories_float64_against_numpy():
    """Two categories [B = 7, D = 2] and [7, 3] in float64: relu(rho - target), exact to 1e-12."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(7, 1))
    z1, z2 = base + 0.3 * rng.normal(size=(7, 2)), base + 0.3 * rng.normal(size=(7, 3))
    rho = _np_rho(z1, z2)
    got = losses.orthogonality_loss([torch.tensor(z1), torch.tensor(z2)], 0.1)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(rho - 0.1, rel=1e-12)
    assert float(losses.orthogonality_loss([torch.tensor(z1), torch.tensor(z2)])) == pytest.approx(rho, rel=1e-12)
    # two rows are enough for a batch statistic
    assert float(losses.orthogonality_loss([torch.tensor(z1[:2]), torch.tensor(z2[:2])])) > 0


def test_orthogonality_of_uncorrelated_categories_is_near_zero():
    """Exactly uncorrelated columns: sum(G_i * G_j) = 0, floored at 1e-12, so rho = 1e-6 / (B sqrt(D D'))."""
    z1 = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]], dtype=torch.float64)
    assert float(losses.orthogonality_loss([z1, z2])) == pytest.approx(1e-6 / 4, rel=1e-9)


def test_loss_messages():
    """Messages of the loss terms name the argument and the shape or count at fault."""
    z = torch.zeros(4, 2)
    for fn in (losses.orthogonality_loss, losses.informativeness_loss):
        with pytest.raises(ValueError, match=r"^embeddings is empty$"):
            fn([])
        with pytest.raises(ValueError, match=r"^embeddings\[1\] must be 2-D \[B, D\], got shape \(4,\)$"):
            fn([z, torch.zeros(4)])
        with pytest.raises(ValueError, match=r"^embeddings\[0\] needs at least 2 rows \(a batch statistic\), got 1$"):
            fn([z[:1]])
    with pytest.raises(ValueError, match=r"^embeddings have different batch sizes \[4, 3\]$"):
        losses.orthogonality_loss([z, torch.zeros(3, 5)])
    with pytest.raises(ValueError, match=r"^x has shape \(4, 2\) but x_hat has shape \(4, 3\)$"):
        losses.reconstruction_loss(z, torch.zeros(4, 3))
    x3 = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^x needs at least 3 rows \(a batch statistic\), got 2$"):
        losses.topographic_loss(x3[:2], x3[:2])
    with pytest.raises(ValueError, match=r"^z needs at least 3 rows \(a batch statistic\), got 2$"):
        losses.topographic_loss(x3, x3[:2])
    with pytest.raises(ValueError, match=r"^z must be 2-D \[B, D\], got shape \(5,\)$"):
        losses.topographic_loss(x3, x3[:, 0])
    with pytest.raises(ValueError, match=r"^x has 5 rows but z has 4$"):
        losses.topographic_loss(x3, torch.zeros(4, 7))
    with pytest.raises(ValueError, match=r"^samples must be >= 3, got 2$"):
        losses.topographic_loss(x3, x3, samples=2)


def test_single_column_embeddings_and_single_category():
    """D = 1 columns are valid embeddings; one category gives an exact 0 that still has a graph."""
    z = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
    # std of [0, 1, 3] (biased) = sqrt(14/9): above the floor 1 -> 0; floor 2 -> 2 - sqrt(14/9 + 1e-4)
    assert float(losses.informativeness_loss([z.detach()])) == 0.0
    assert losses.informativeness_loss([z.detach()], floor=2.0).item() == pytest.approx(2 - math.sqrt(14 / 9 + 1e-4), rel=1e-6)
    zero = losses.orthogonality_loss([z])
    assert zero.item() == 0.0 and zero.requires_grad


def test_topographic_with_small_distances_against_numpy():
    """Inputs at scale 0.01 (every distance and centred sum of squares below 1) and exactly 3 samples."""
    rng = np.random.default_rng(6)
    x, z = 0.01 * rng.normal(size=(6, 4)), 0.01 * rng.normal(size=(6, 2))

    def pd(a):
        return np.array([np.linalg.norm(a[i] - a[j]) for i in range(len(a)) for j in range(i + 1, len(a))])

    for samples in (None, 3, 4):
        m = 6 if samples is None else samples
        dx, dz = pd(x[:m]), pd(z[:m])
        expect = 1 - np.corrcoef(dx, dz)[0, 1]
        got = losses.topographic_loss(torch.tensor(x), torch.tensor(z), samples)
        assert float(got) == pytest.approx(expect, rel=1e-9, abs=1e-12), samples
    # duplicate rows: a zero distance (floored at 1e-12 before the square root)
    xd = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.003, 0.004]], dtype=torch.float64)
    zd = torch.tensor([[0.0], [0.002], [0.005]], dtype=torch.float64)
    dx, dz = np.array([1e-6, 0.005, 0.005]), np.array([0.002, 0.005, 0.003])
    assert float(losses.topographic_loss(xd, zd)) == pytest.approx(1 - np.corrcoef(dx, dz)[0, 1], rel=1e-9)


# ----------------------------------------------------------------------------------------- model

SIZES = [[5, 3, 2], [4, 4, 3], [6, 2, 2]]


def _model(**kw):
    torch.manual_seed(0)
    args = {"assignment": ASSIGNMENT, "codebook_sizes": SIZES, "embedding_dim": 3, "hidden_dim": 4,
            "decoder_hidden_dims": [5], "kmeans_init": False, "threshold_ema_dead_code": 0.0}
    args.update(kw)
    return CategoricalVQVAE(**args)


def test_model_defaults_are_recorded_in_init_kwargs():
    """The constructor's defaults (SPEC 9), as init_kwargs records them for a checkpoint."""
    m = CategoricalVQVAE(assignment=[0, 1, 0], codebook_sizes=[(4, 3, 2), [2, 2, 2]])
    assert m.init_kwargs == {
        "assignment": [0, 1, 0], "codebook_sizes": [[4, 3, 2], [2, 2, 2]], "embedding_dim": 256, "hidden_dim": 512,
        "decoder_hidden_dims": [512, 512], "activation": "relu", "commitment_cost": 0.25, "use_ema": True,
        "decay": 0.99, "kmeans_init": True, "kmeans_iters": 10, "threshold_ema_dead_code": 1.0,
        "rotation_trick": False, "quantize": True}
    assert (m.num_features, m.num_categories, m.num_levels, m.embedding_dim) == (3, 2, 3, 256)
    assert m.quantize is True and m.reset_cluster_size == 1.0
    # encoder n_c -> 512 -> 256 with one activation; decoder 2 * 256 -> 512 -> 512 -> 3
    enc = m.categories[0].encoder
    assert [type(layer).__name__ for layer in enc] == ["Linear", "ReLU", "Linear"]
    assert (enc[0].in_features, enc[0].out_features, enc[2].out_features) == (2, 512, 256)
    assert [type(layer).__name__ for layer in m.decoder] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [(layer.in_features, layer.out_features) for layer in m.decoder[::2]] == [(512, 512), (512, 512), (512, 3)]
    for cat, sizes in zip(m.categories, [[4, 3, 2], [2, 2, 2]]):
        assert [layer.codebook_size for layer in cat.rvq.layers] == sizes
        assert all(layer._codebook.kmeans_iters == 10 for layer in cat.rvq.layers)


def test_model_values_are_converted_and_kept():
    """init_kwargs holds plain Python values; numpy integers are accepted; decay 1, commitment 0 and
    threshold 0 are inside their ranges; kmeans_iters reaches the library."""
    m = _model(embedding_dim=np.int64(1), hidden_dim=1, decoder_hidden_dims=[], commitment_cost=0, decay=1,
               threshold_ema_dead_code=0, kmeans_iters=3, use_ema=0, rotation_trick=1, activation="tanh",
               codebook_sizes=[[2, 2, 2], [np.int32(3), 2, 2], [2, 3, 2]])
    kw = m.init_kwargs
    assert kw["embedding_dim"] == 1 and type(kw["embedding_dim"]) is int
    assert kw["codebook_sizes"] == [[2, 2, 2], [3, 2, 2], [2, 3, 2]] and type(kw["codebook_sizes"][1][0]) is int
    assert kw["decoder_hidden_dims"] == [] and kw["activation"] == "tanh"
    for k, v in [("commitment_cost", 0.0), ("decay", 1.0), ("threshold_ema_dead_code", 0.0)]:
        assert kw[k] == v and type(kw[k]) is float
    assert kw["use_ema"] is False and kw["rotation_trick"] is True and kw["kmeans_iters"] == 3
    assert all(layer._codebook.kmeans_iters == 3 for cat in m.categories for layer in cat.rvq.layers)
    assert len(m.decoder) == 1 and (m.decoder[0].in_features, m.decoder[0].out_features) == (3, 6)
    assert isinstance(m.categories[0].encoder[1], torch.nn.Tanh)
    assert m.categories[1].columns.dtype == torch.long and m.categories[1].columns.tolist() == [1, 3]


@pytest.mark.parametrize("kw, msg", [
    ({"assignment": [[0, 1]]}, r"^assignment must be a non-empty 1-D list of category labels \[F\], got shape \(1, 2\)$"),
    ({"assignment": []}, r"^assignment must be a non-empty 1-D list of category labels \[F\], got shape \(0,\)$"),
    ({"assignment": [0.0, 1.0]}, r"^assignment must hold integer category labels, got dtype float64$"),
    ({"assignment": [1, 2, 1]}, r"^assignment labels must be 0\.\.C-1 with every category present, got \[1, 2\]$"),
    ({"assignment": [0, 2, 2, 0, 0, 0]}, r"^assignment labels must be 0\.\.C-1 with every category present, got \[0, 2\]$"),
    ({"codebook_sizes": [[5, 3, 2], [4, 4, 3]]}, r"^codebook_sizes must list 3 sizes for each of the 3 categories, got "
                                                  r"\[\[5, 3, 2\], \[4, 4, 3\]\]$"),
    ({"codebook_sizes": [[5, 3, 2], [4, 4], [6, 2, 2]]}, r"^codebook_sizes must list 3 sizes for each of the 3"),
    ({"codebook_sizes": [[5, 3, 2], 4, [6, 2, 2]]}, r"^codebook_sizes must list 3 sizes for each of the 3"),
    ({"codebook_sizes": [[5, 3, 2], [4, 1, 3], [6, 2, 2]]}, r"^codebook size of category 1 level 1 must be an integer >= 2, got 1$"),
    ({"codebook_sizes": [[5, 3, 2], [4, 4, 3], [6, 2, 2.0]]}, r"^codebook size of category 2 level 2 must be an integer >= 2, got 2\.0$"),
    ({"embedding_dim": 0}, r"^embedding_dim must be an integer >= 1, got 0$"),
    ({"embedding_dim": True}, r"^embedding_dim must be an integer >= 1, got True$"),
    ({"hidden_dim": 0}, r"^hidden_dim must be an integer >= 1, got 0$"),
    ({"decoder_hidden_dims": [3, 0]}, r"^decoder_hidden_dims entry must be an integer >= 1, got 0$"),
    ({"kmeans_iters": 0}, r"^kmeans_iters must be an integer >= 1, got 0$"),
    ({"activation": "swish"}, r"^unknown activation 'swish'; known: gelu, relu, tanh, silu, elu, leaky_relu, sigmoid, "
                              r"softplus$"),
    ({"commitment_cost": -0.5}, r"^commitment_cost must be >= 0, got -0\.5$"),
    ({"commitment_cost": float("nan")}, r"^commitment_cost must be >= 0, got nan$"),
    ({"decay": 0.0}, r"^decay must lie in \(0, 1\], got 0\.0$"),
    ({"decay": 1.5}, r"^decay must lie in \(0, 1\], got 1\.5$"),
    ({"threshold_ema_dead_code": -1.0}, r"^threshold_ema_dead_code must be >= 0, got -1\.0$"),
])
def test_model_refusals_name_the_argument(kw, msg):
    """Every out-of-range constructor argument is named with its value."""
    with pytest.raises(ValueError, match=msg):
        _model(**kw)


def test_single_category_and_minimum_sizes():
    """One category (labels [0, 0]) with codebooks of 2 codes and 1-dim embeddings works."""
    m = CategoricalVQVAE(assignment=[0, 0], codebook_sizes=[[2, 2, 2]], embedding_dim=1, hidden_dim=1,
                         decoder_hidden_dims=[], kmeans_init=False)
    out = m.eval()(torch.zeros(4, 2))
    assert out["tokens"].shape == (4, 3) and out["commit_losses"].shape == (1, 3)


def test_forward_inputs_and_outputs_without_quantizers():
    """Non-tensor and float64 inputs become float32; without quantizers commit_losses is [C, 0]."""
    m = _model(quantize=False)
    x = np.random.default_rng(0).normal(size=(4, 6))
    out = m(x.tolist())
    assert out["reconstruction"].dtype == torch.float32 and out["reconstruction"].shape == (4, 6)
    assert out["commit_losses"].shape == (3, 0) and float(out["commit_loss"]) == 0.0 and out["tokens"] is None
    torch.testing.assert_close(m(torch.tensor(x))["reconstruction"], out["reconstruction"])
    for c, cat in enumerate(m.categories):
        torch.testing.assert_close(out["embeddings"][c], cat.encoder(torch.tensor(x, dtype=torch.float32)[:, ASSIGNMENT == c]))
    with pytest.raises(ValueError, match=r"^x must be \[B, F = 6\] \(one column per assignment entry\), got shape \(4, 5\)$"):
        m(x[:, :5])
    with pytest.raises(ValueError, match=r"^x must be \[B, F = 6\] \(one column per assignment entry\), got shape \(2, 4, 6\)$"):
        m(torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"^x must be floating point, got dtype torch\.int64$"):
        m(torch.zeros(4, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^tokenize needs quantizers; this model was built with quantize=False$"):
        m.tokenize(x)
    with pytest.raises(ValueError, match=r"^decode_tokens needs quantizers; this model was built with quantize=False$"):
        m.decode_tokens(np.zeros((1, 9), dtype=np.int64))


def test_decode_tokens_checks_and_level_sums():
    """Token checks name the first bad column with its range; values 0 and size - 1 are valid;
    ``levels`` must be an int in [1, 3]; decoding sums the codes of the first levels."""
    m = _model().eval()
    # token columns: sizes [5, 3, 2 | 4, 4, 3 | 6, 2, 2]
    top = np.array([[4, 2, 1, 3, 3, 2, 5, 1, 1]])
    zeros = np.zeros((1, 9), dtype=np.int64)
    assert m.decode_tokens(np.concatenate([top, zeros])).shape == (2, 6)
    bad = np.concatenate([top, zeros])
    bad[0, 4] = 4  # = size of column 4
    bad[1, 7] = -1
    with pytest.raises(ValueError, match=r"^token column 4 \(category 1, level 1\) has values in \[0, 4\] outside \[0, 4\)$"):
        m.decode_tokens(bad)
    neg = zeros.copy()
    neg[0, 2] = -3
    with pytest.raises(ValueError, match=r"^token column 2 \(category 0, level 2\) has values in \[-3, -3\] outside \[0, 2\)$"):
        m.decode_tokens(neg)
    with pytest.raises(ValueError, match=r"^tokens must be \[B, C \* 3 = 9\], got shape \(1, 8\)$"):
        m.decode_tokens(zeros[:, :8])
    with pytest.raises(ValueError, match=r"^tokens must be \[B, C \* 3 = 9\], got shape \(9,\)$"):
        m.decode_tokens(zeros[0])
    for dtype in (torch.bool, torch.float32, torch.complex64):
        with pytest.raises(ValueError, match=rf"^tokens must be integers, got dtype {re.escape(str(dtype))}$"):
            m.decode_tokens(torch.zeros(1, 9, dtype=dtype))
    for levels in (0, 4, True, 2.0):
        with pytest.raises(ValueError, match=rf"^levels must be an integer in \[1, 3\], got {re.escape(repr(levels))}$"):
            m.decode_tokens(zeros, levels=levels)
    t = torch.tensor(top, dtype=torch.int32)
    for levels in (1, np.int64(2), 3):
        parts = []
        for c, cat in enumerate(m.categories):
            books = [layer.codebook for layer in cat.rvq.layers]
            parts.append(sum(books[lv][t[:, 3 * c + lv].long()] for lv in range(int(levels))))
        expect = m.decoder(torch.cat(parts, dim=1))
        torch.testing.assert_close(m.decode_tokens(t, levels=levels), expect)


# ------------------------------------------------------------------------------------ train module

def test_evaluate_tokenizer_wires_metrics_and_per_family_quality(monkeypatch):
    """Levels and tokens from the inference helpers reach compute_tokenizer_metrics by name; the
    per-family quality is 1 - MSE over the family's columns of the last level, in float64."""
    from spinlock_core.tokenizer import train

    calls = {}
    x_val = np.array([[1.1, 2.0, 3.0], [0.0, -1.0, 2.0]], dtype=np.float32)
    x_train = np.zeros((4, 3), dtype=np.float32)
    last = np.array([[1.7, 2.0, 2.0], [0.0, 0.0, 2.3]], dtype=np.float32)
    levels = [np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32), last]
    model = object()

    def level_reconstructions(m, x):
        calls["levels"] = (m, x)
        return levels

    def tokenize_array(m, x):
        calls.setdefault("tokenize", []).append((m, x))
        return "tok_val" if x is x_val else "tok_train"

    def compute(**kw):
        calls["metrics"] = kw
        return "metrics"

    monkeypatch.setattr(train, "level_reconstructions", level_reconstructions)
    monkeypatch.setattr(train, "tokenize_array", tokenize_array)
    monkeypatch.setattr(train, "compute_tokenizer_metrics", compute)
    metrics, per_family = train.evaluate_tokenizer(
        model, x_train, x_val, codebook_sizes=[4, 3, 2], ic_types_val=["a", "b"], assignment=[0, 0, 0],
        reliabilities=[1.0, 0.5, 0.25], column_family=["s", "t", "s"])
    assert metrics == "metrics"
    assert calls["levels"][0] is model and calls["levels"][1] is x_val
    assert [(m is model, x is xx) for (m, x), xx in zip(calls["tokenize"], (x_val, x_train))] == [(True, True)] * 2
    kw = calls["metrics"]
    assert kw.pop("x_val") is x_val and kw.pop("reconstruction_val") is last and kw.pop("level_reconstructions_val") is levels
    assert kw == {"tokens_train": "tok_train", "tokens_val": "tok_val", "codebook_sizes": [4, 3, 2], "num_levels": 3,
                  "ic_types_val": ["a", "b"], "assignment": [0, 0, 0], "reliabilities": [1.0, 0.5, 0.25]}
    # family s: columns 0 and 2, errors (-0.6, 1.0, 0.0, -0.3) -> MSE 1.45 / 4; family t: (0, -1) -> 0.5
    assert list(per_family) == ["s", "t"]
    x64, l64 = x_val.astype(np.float64), last.astype(np.float64)
    err_s = (x64[:, [0, 2]] - l64[:, [0, 2]]) ** 2
    assert per_family["s"] == pytest.approx(1.0 - err_s.sum() / 4, rel=1e-14, abs=0)
    assert per_family["s"] == pytest.approx(1.0 - 1.45 / 4, rel=1e-6) and per_family["t"] == pytest.approx(0.5, rel=1e-12)
    assert train.evaluate_tokenizer(model, x_train, x_val, codebook_sizes=[4, 3, 2], ic_types_val=["a", "b"],
                                    assignment=[0, 0, 0], reliabilities=[1.0, 0.5, 0.25])[1] == {}


def test_peak_rss_is_maxrss_in_mib():
    """ru_maxrss of this process (KiB on Linux) / 1024."""
    import resource

    from spinlock_core.tokenizer import train

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = train.peak_rss_mb()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert before / 1024.0 <= got <= after / 1024.0


def test_train_tokenizer_prepares_then_trains_with_every_argument(monkeypatch):
    """train_tokenizer = prepare_tokenizer_input(dataset, cfg, device, progress) then
    train_on_prepared(input, cfg, out, device, progress, config_path)."""
    from spinlock_core.tokenizer import train

    calls = {}

    def prepare(dataset, cfg, **kw):
        calls["prepare"] = (dataset, cfg, kw)
        return "prepared"

    def on_prepared(inp, cfg, out, **kw):
        calls["train"] = (inp, cfg, out, kw)
        return "tok", {"m": 1}

    monkeypatch.setattr(train, "prepare_tokenizer_input", prepare)
    monkeypatch.setattr(train, "train_on_prepared", on_prepared)
    cfg, progress = object(), (lambda *a: None)
    assert train.train_tokenizer("d.h5", cfg, "out", device="cpu", progress=progress, config_path="c.yaml") == (
        "tok", {"m": 1})
    assert calls["prepare"] == ("d.h5", cfg, {"device": "cpu", "progress": progress})
    assert calls["train"] == ("prepared", cfg, "out", {"device": "cpu", "progress": progress, "config_path": "c.yaml"})
    train.train_tokenizer("e.h5", cfg, "out2")
    assert calls["prepare"] == ("e.h5", cfg, {"device": None, "progress": None})
    assert calls["train"] == ("prepared", cfg, "out2", {"device": None, "progress": None, "config_path": None})


def test_from_config_maps_every_field_and_passes_overrides():
    """VQModelConfig field -> constructor argument, for every field away from its default; the
    codebook sizes from ``levels``; keyword overrides win."""
    cfg = VQModelConfig(group_embedding_dim=2, group_hidden_dim=3, decoder_hidden_dims=[4, 5], activation="tanh",
                        commitment_cost=0.5, decay=0.9, kmeans_init=False, threshold_ema_dead_code=0.2,
                        rotation_trick=True, levels=[5, 4, 3]).model_copy(update={"use_ema": False})
    m = CategoricalVQVAE.from_config(np.array([1, 0, 1]), cfg)
    assert m.init_kwargs == {
        "assignment": [1, 0, 1], "codebook_sizes": [[5, 4, 3], [5, 4, 3]], "embedding_dim": 2, "hidden_dim": 3,
        "decoder_hidden_dims": [4, 5], "activation": "tanh", "commitment_cost": 0.5, "use_ema": False, "decay": 0.9,
        "kmeans_init": False, "kmeans_iters": 10, "threshold_ema_dead_code": 0.2, "rotation_trick": True,
        "quantize": True}
    plain = CategoricalVQVAE.from_config([0, 0, 1], cfg, quantize=False, hidden_dim=6)
    assert plain.init_kwargs["quantize"] is False and plain.init_kwargs["hidden_dim"] == 6
    assert all(cat.rvq is None for cat in plain.categories)
    with pytest.raises(ValueError, match=r"^assignment labels must be 0\.\.C-1 with every category present, got \[1\]$"):
        CategoricalVQVAE.from_config([1, 1], cfg)


def test_library_flags_are_pinned_off():
    """The library settings the constructor pins (no cosine similarity, straight-through or stochastic
    code choice, no extra regularisers, no gradient fraction, no shared codebook)."""
    m = _model()
    for cat in m.categories:
        assert cat.rvq.quant_grad_frac == 0.0 and cat.rvq.shared_codebook is False
        for layer in cat.rvq.layers:
            assert layer.orthogonal_reg_weight == 0.0 and layer.codebook_diversity_loss_weight == 0.0
            assert layer._codebook.gumbel_sample.keywords == {"stochastic": False, "straight_through": False}


def test_a_nan_first_round_counts_once_towards_patience(monkeypatch):
    """Validation losses NaN, 1, 0.5 with patience 2: the NaN round is one stale round, not two, so
    training goes on to step 6 and keeps the last round's weights."""
    xt, xv = _data()
    monkeypatch.setattr(training, "_evaluate", _Scripted([float("nan"), 1.0, 0.5]))
    cfg = _cfg(max_steps=6, val_every_steps=2, dead_code_reset_interval=0, early_stopping_patience=2)
    r = training.train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, log=_Log())
    assert r.steps_run == 6 and not r.stopped_early and r.best_step == 6
