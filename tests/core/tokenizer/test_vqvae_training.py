"""Training of the VQ-VAE (SPEC 9): learning-rate schedule, quality on a tiny synthetic dataset,
determinism and RNG isolation, early stopping with the best weights restored, dead-code resets,
the torch.compile fallback, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.config.tokenizer import TrainingConfig, VQModelConfig
from spinlock_core.tokenizer.metrics import per_level_quality
from spinlock_core.tokenizer.training import lr_factor, train_vqvae

ASSIGNMENT = np.repeat(np.arange(4), 5)
MODEL = VQModelConfig(group_embedding_dim=16, group_hidden_dim=32, decoder_hidden_dims=[64], threshold_ema_dead_code=0.1)


def train_cfg(**kw) -> TrainingConfig:
    args = {"batch_size": 64, "max_steps": 300, "val_every_steps": 50, "dead_code_reset_interval": 100,
                "learning_rate": 3e-3, "device": "cpu"}
    args.update(kw)
    args["dead_code_reset_interval"] = min(args["dead_code_reset_interval"], args["max_steps"])
    return TrainingConfig(**args)


def synthetic(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 categories of 5 columns, each a noisy linear image of its own 2-D latent; z-scored on
    the first 600 rows (training), the last 200 are validation."""
    rng = np.random.default_rng(seed)
    blocks = [rng.normal(size=(n, 2)) @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(n, 5)) for _ in range(4)]
    x = np.concatenate(blocks, axis=1).astype(np.float32)
    x = (x - x[:600].mean(0)) / x[:600].std(0)
    return x[:600], x[600:]


@pytest.fixture(scope="module")
def trained():
    xt, xv = synthetic()
    calls = []
    result = train_vqvae(xt, xv, ASSIGNMENT, MODEL, train_cfg(), progress=lambda *a: calls.append(a))
    return result, xt, xv, calls


def test_lr_factor_is_linear_warmup_then_cosine():
    assert lr_factor(0, 10, 110) == pytest.approx(0.1)
    assert lr_factor(4, 10, 110) == pytest.approx(0.5)
    assert lr_factor(9, 10, 110) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110) == pytest.approx(0.5)
    assert lr_factor(35, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr_factor(110, 10, 110) == pytest.approx(0.0, abs=1e-15)
    assert lr_factor(0, 0, 100) == 1.0


def test_training_reaches_quality_and_utilization(trained):
    result, _xt, xv, calls = trained
    assert result.device == "cpu" and not result.model.training
    assert next(result.model.parameters()).device.type == "cpu"
    assert result.steps_run == 300 and not result.stopped_early
    assert [h["step"] for h in result.history] == [50, 100, 150, 200, 250, 300]
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.best_step == best["step"]
    assert best["val_quality"] > 0.9 and best["val_utilization"] > 0.5
    # the restored weights are the best round's
    rec = result.model.eval()(torch.from_numpy(xv))["reconstruction"].detach().numpy()
    assert float(np.mean((rec - xv) ** 2)) == pytest.approx(best["val_loss"], rel=1e-5)
    q = per_level_quality(xv, [r.numpy() for r in result.model.reconstruct_levels(torch.from_numpy(xv))])
    assert q[0] <= q[1] <= q[2] and q[2] == pytest.approx(best["val_quality"], rel=1e-5)
    # the learning rate recorded is that of the round's last step
    for h in result.history:
        assert h["lr"] == pytest.approx(3e-3 * lr_factor(h["step"] - 1, 0, 300))
    assert {"train_loss", "train_reconstruction", "train_vq", "train_orthogonality", "train_informativeness",
            "train_topographic", "val_loss", "val_quality", "val_utilization", "dead_codes_reset",
            "seconds"} <= set(result.history[0])
    assert [c[0] for c in calls] == [h["step"] for h in result.history]
    assert all(c[1] == 300 and c[2] is h for c, h in zip(calls, result.history))
    assert sum(h["dead_codes_reset"] for h in result.history) == result.dead_codes_reset


def _weights(result):
    return result.model.state_dict()


def test_same_seed_same_weights_other_seed_other_weights_global_rng_untouched():
    xt, xv = synthetic()
    cfg = train_cfg(max_steps=30, val_every_steps=10, dead_code_reset_interval=10)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _weights(train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg))
    assert torch.equal(torch.get_rng_state(), before)
    b = _weights(train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg))
    c = _weights(train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg.model_copy(update={"seed": 1})))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_restores_the_best_weights():
    xt, xv = synthetic()
    cfg = train_cfg(learning_rate=0.05, max_steps=300, val_every_steps=5, early_stopping_patience=1)
    r = train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg)
    assert r.stopped_early and r.steps_run < 300 and r.steps_run == r.history[-1]["step"]
    losses = [h["val_loss"] for h in r.history]
    assert losses[-1] >= min(losses[:-1])  # the last round did not improve
    assert all(losses[i] > losses[i + 1] for i in range(len(losses) - 2))  # every earlier one did (patience 1)
    assert r.best_step == r.history[int(np.argmin(losses))]["step"]
    rec = r.model(torch.from_numpy(xv))["reconstruction"].detach().numpy()
    assert float(np.mean((rec - xv) ** 2)) == pytest.approx(min(losses), rel=1e-5)


def test_dead_code_resets_are_counted():
    xt, xv = synthetic()
    model = MODEL.model_copy(update={"levels": [96, 48, 48], "threshold_ema_dead_code": 0.0})
    r = train_vqvae(xt, xv, ASSIGNMENT, model, train_cfg(max_steps=40, val_every_steps=20, dead_code_reset_interval=20))
    assert r.dead_codes_reset > 0
    assert next(h["dead_codes_reset"] for h in r.history) > 0
    off = train_vqvae(xt, xv, ASSIGNMENT, model, train_cfg(max_steps=40, val_every_steps=20, dead_code_reset_interval=0))
    assert off.dead_codes_reset == 0


def test_without_quantizers_and_with_learnable_codebooks():
    xt, xv = synthetic()
    cfg = train_cfg(max_steps=20, val_every_steps=10)
    r = train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg, quantize=False)
    assert math.isnan(r.history[-1]["val_utilization"]) and r.history[-1]["val_quality"] > 0
    learnable = MODEL.model_copy(update={"use_ema": False})
    r = train_vqvae(xt, xv, ASSIGNMENT, learnable, cfg)
    assert r.history[-1]["val_quality"] > r.history[0]["val_quality"] - 0.5


def test_failed_compile_falls_back_to_identical_eager_training(monkeypatch):
    xt, xv = synthetic()
    cfg = train_cfg(max_steps=10, val_every_steps=5)
    eager = _weights(train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg))

    def broken(model):
        def run(*a, **k):
            model(*a, **k)  # side effects (k-means init, EMA update) before the failure
            raise RuntimeError("no compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fell_back = _weights(train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg.model_copy(update={"use_torch_compile": True})))
    assert all(torch.equal(eager[k], fell_back[k]) for k in eager)


def test_invalid_inputs_are_named():
    xt, xv = synthetic()
    cfg = train_cfg(max_steps=5, val_every_steps=5)
    bad = xt.copy()
    bad[3, 2] = np.nan
    for args, msg in [
        ((xt, xv[:, :19], ASSIGNMENT), "x_train has 20, x_val 19, assignment 20"),
        ((xt, xv, ASSIGNMENT[:19]), "assignment 19"),
        ((bad, xv, ASSIGNMENT), "x_train contains NaN or inf"),
        ((xt[:2], xv, ASSIGNMENT), "at least 3 rows"),
        ((xt, xv[:0], ASSIGNMENT), "x_val is empty"),
        ((xt[0], xv, ASSIGNMENT), r"x_train must be 2-D"),
    ]:
        with pytest.raises(ValueError, match=msg):
            train_vqvae(*args, MODEL, cfg)
    with pytest.raises(ValueError, match="topo_samples = 2"):
        train_vqvae(xt, xv, ASSIGNMENT, MODEL, cfg.model_copy(update={"topo_samples": 2}))
    # fewer rows than batch_size is fine: batches of min(batch_size, N)
    r = train_vqvae(xt[:40], xv, ASSIGNMENT, MODEL, cfg)
    assert r.steps_run == 5
