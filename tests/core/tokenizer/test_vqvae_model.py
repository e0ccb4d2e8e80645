"""The categorical hierarchical VQ-VAE (SPEC 9) and its loss terms: token layout, the settings
that must reach vector-quantize-pytorch, decoding round trips and partial sums, dead-code
re-seeding, and every loss against an independent numpy/scipy computation on a tiny case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from torch import nn

from spinlock_core.config.tokenizer import VQModelConfig
from spinlock_core.tokenizer.categories import codebook_sizes
from spinlock_core.tokenizer.losses import (
    informativeness_loss,
    orthogonality_loss,
    reconstruction_loss,
    topographic_loss,
    vq_loss,
)
from spinlock_core.tokenizer.model import CategoricalVQVAE

ASSIGNMENT = [0, 1, 0, 2, 1, 0, 2, 1, 2]  # interleaved: categories gather their own columns
SIZES = [[5, 3, 2], [7, 4, 3], [6, 5, 2]]


def tiny(**kw) -> CategoricalVQVAE:
    args = {"assignment": ASSIGNMENT, "codebook_sizes": SIZES, "embedding_dim": 4, "hidden_dim": 8,
                "decoder_hidden_dims": [16], "threshold_ema_dead_code": 0.0}
    args.update(kw)
    torch.manual_seed(0)
    return CategoricalVQVAE(**args)


def data(n=64, seed=1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, len(ASSIGNMENT))).astype(np.float32))


@pytest.fixture
def initted():
    """A tiny model after one training-mode forward (k-means initialisation of the codebooks)."""
    model, x = tiny(), data()
    model.train()(x)
    return model, x


# ----------------------------------------------------------------------------- layout and settings


def test_tokens_are_category_major_level_minor_within_each_codebook(initted):
    model, x = initted
    tokens = model.tokenize(x)
    assert tokens.dtype == torch.int64 and tokens.shape == (64, 9)
    assert model.token_sizes == [5, 3, 2, 7, 4, 3, 6, 5, 2]
    for j, k in enumerate(model.token_sizes):
        assert 0 <= int(tokens[:, j].min()) and int(tokens[:, j].max()) < k
    model.eval()
    cols = np.asarray(ASSIGNMENT)
    for c, cat in enumerate(model.categories):
        assert cat.columns.tolist() == np.flatnonzero(cols == c).tolist()
        _, idx, _ = cat.rvq(cat.encoder(x[:, cols == c]))
        assert torch.equal(tokens[:, 3 * c:3 * c + 3], idx)


def test_from_config_sizes_follow_the_codebook_rule():
    a = [0] * 3 + [1] * 7 + [2] * 12
    for cfg, expect in [
        (VQModelConfig(), [list(codebook_sizes(n, 2)) for n in (3, 7, 12)]),
        (VQModelConfig(codebook_scale=3), [list(codebook_sizes(n, 3)) for n in (3, 7, 12)]),
        (VQModelConfig(levels=[8, 6, 4]), [[8, 6, 4]] * 3),
    ]:
        model = CategoricalVQVAE.from_config(a, cfg.model_copy(update={"group_embedding_dim": 4, "group_hidden_dim": 4}))
        assert model.codebook_sizes == expect
        for cat, sizes in zip(model.categories, expect):
            assert [layer.codebook_size for layer in cat.rvq.layers] == sizes
            assert [tuple(layer.codebook.shape) for layer in cat.rvq.layers] == [(k, 4) for k in sizes]
    assert CategoricalVQVAE(**model.init_kwargs).init_kwargs == model.init_kwargs


@pytest.mark.parametrize("cfg", [
    VQModelConfig(),
    VQModelConfig(decay=0.9, commitment_cost=0.5, kmeans_init=False, threshold_ema_dead_code=0.3,
                  rotation_trick=True, activation="gelu"),
])
def test_every_setting_reaches_the_library(cfg):
    model = CategoricalVQVAE.from_config([0, 0, 0, 1, 1, 1], cfg.model_copy(update={"group_embedding_dim": 4}))
    for cat in model.categories:
        assert len(cat.rvq.layers) == 3 and not cat.rvq.quantize_dropout
        for layer in cat.rvq.layers:
            book = layer._codebook
            assert book.decay == cfg.decay
            assert layer.commitment_weight == cfg.commitment_cost
            assert bool(book.initted) == (not cfg.kmeans_init)  # k-means init pending until the first batch
            assert book.kmeans_iters == 10
            assert book.threshold_ema_dead_code == cfg.threshold_ema_dead_code
            assert layer.rotation_trick is cfg.rotation_trick
            assert book.ema_update and not book.learnable_codebook and not layer.use_cosine_sim
            assert not book.use_ddp
        assert isinstance(cat.encoder[1], {"relu": nn.ReLU, "gelu": nn.GELU}[cfg.activation])


def test_use_ema_false_gives_a_learnable_codebook():
    model = tiny(use_ema=False, decay=0.99)
    x = data()
    model.train()
    out = model(x)
    (reconstruction_loss(x, out["reconstruction"]) + out["commit_loss"]).backward()
    for cat in model.categories:
        for layer in cat.rvq.layers:
            assert isinstance(layer._codebook.embed, nn.Parameter) and not layer._codebook.ema_update
            assert layer._codebook.embed.grad is not None and layer._codebook.embed.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- decoding


def test_decoding_tokens_reproduces_the_eval_forward(initted):
    model, x = initted
    out = model.eval()(x)
    tokens = model.tokenize(x)
    assert torch.allclose(model.decode_tokens(tokens), out["reconstruction"], atol=1e-6)
    levels = model.reconstruct_levels(x)
    assert len(levels) == 3 and torch.allclose(levels[-1], out["reconstruction"], atol=1e-6)
    for n_levels in (1, 2, 3):
        parts = []
        for c, cat in enumerate(model.categories):
            q = sum(cat.rvq.layers[lv].codebook[tokens[:, 3 * c + lv]] for lv in range(n_levels))
            if n_levels == 3:
                assert torch.allclose(q, out["quantized"][c], atol=1e-6)
            parts.append(q)
        manual = model.decoder(torch.cat(parts, dim=1))
        assert torch.allclose(model.decode_tokens(tokens, levels=n_levels), manual, atol=1e-6)
        assert torch.allclose(levels[n_levels - 1], manual, atol=1e-6)


def test_eval_commit_loss_is_the_library_formula():
    # decay 1 and no expiry: the training forward leaves the codebooks as they are
    model, x = tiny(decay=1.0), data()
    model.train()(x)
    lib = model(x)["commit_losses"].detach()
    assert lib.shape == (3, 3) and float(lib.sum().detach()) > 0
    ours = model.eval()(x)["commit_losses"]
    assert torch.allclose(lib, ours, rtol=1e-5, atol=1e-7)


def test_without_quantizers():
    model, x = tiny(quantize=False), data()
    out = model(x)
    assert out["tokens"] is None and float(out["commit_loss"]) == 0.0
    assert out["reconstruction"].shape == x.shape
    assert all(torch.equal(q, z) for q, z in zip(out["quantized"], out["embeddings"]))
    with pytest.raises(ValueError, match="quantize=False"):
        model.tokenize(x)


def test_invalid_inputs_are_named(initted):
    model, x = initted
    with pytest.raises(ValueError, match=r"x must be \[B, F = 9\]"):
        model(x[:, :8])
    with pytest.raises(ValueError, match=r"x must be \[B, F = 9\]"):
        model.tokenize(x[0])
    tokens = model.tokenize(x)
    bad = tokens.clone()
    bad[0, 5] = 3
    with pytest.raises(ValueError, match=r"token column 5 \(category 1, level 2\) .* outside \[0, 3\)"):
        model.decode_tokens(bad)
    with pytest.raises(ValueError, match=r"tokens must be \[B, C \* 3 = 9\]"):
        model.decode_tokens(tokens[:, :6])
    with pytest.raises(ValueError, match="integers"):
        model.decode_tokens(tokens.float())
    with pytest.raises(ValueError, match=r"levels must be an integer in \[1, 3\]"):
        model.decode_tokens(tokens, levels=0)
    for kw, msg in [
        ({"assignment": [0, 2, 2]}, "0..C-1"),
        ({"codebook_sizes": SIZES[:2]}, "3 sizes for each of the 3 categories"),
        ({"codebook_sizes": [[5, 3, 1], *SIZES[1:]]}, "category 0 level 2 must be an integer >= 2"),
        ({"activation": "swish"}, "unknown activation"),
        ({"decay": 0.0}, r"decay must lie in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=msg):
            tiny(**kw)


# ----------------------------------------------------------------------------- dead codes


def test_reseeding_replaces_a_dead_code_that_then_gets_used(initted):
    model, x = initted
    book = model.categories[0].rvq.layers[0]._codebook
    book.embed.data[0, 3] = 1.0e3  # far from every embedding: never chosen
    assert not (model.tokenize(x)[:, 0] == 3).any()
    dead = torch.zeros(sum(model.token_sizes), dtype=torch.bool)
    dead[3] = True  # category 0, level 0, code 3
    g = torch.Generator().manual_seed(0)
    assert model.reseed_codes(x, dead, generator=g) == 1
    emb = model.categories[0].encoder(x[:, np.asarray(ASSIGNMENT) == 0]).detach()
    code = book.embed[0, 3].detach()
    assert torch.isclose(emb, code).all(dim=1).any()  # moved onto an embedding of the batch
    assert float(book.cluster_size[0, 3]) == model.reset_cluster_size == 1.0
    assert torch.allclose(book.embed_avg[0, 3], code * model.reset_cluster_size)
    assert (model.tokenize(x)[:, 0] == 3).any()
    model.train()(x)  # one EMA update: the code follows its rows, it is not sent to the origin
    assert book.embed[0, 3].norm() > 0.1 * code.norm()


# ----------------------------------------------------------------------------- losses


def test_reconstruction_and_vq_losses():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.tensor([[1.0, 0.0], [3.0, 5.0]], requires_grad=True)
    loss = reconstruction_loss(x, x_hat)
    assert loss.item() == 1.25
    loss.backward()
    assert torch.allclose(x_hat.grad, 2 * (x_hat - x).detach() / 4)
    assert float(vq_loss(torch.tensor([[0.1, 0.2], [0.3, 0.4]]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(x, x_hat[:1])


def _np_orthogonality(embs, target):
    vals = []
    for i in range(len(embs)):
        for j in range(i + 1, len(embs)):
            d1 = embs[i].shape[1]
            r = np.corrcoef(embs[i].T, embs[j].T)[:d1, d1:]
            vals.append(max(0.0, np.sqrt(np.mean(r ** 2)) - target))
    return np.mean(vals)


def test_orthogonality_matches_numpy_and_has_a_gradient():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 1))
    embs = [10 * (base + 0.5 * rng.normal(size=(10, d))) for d in (2, 3, 2)]  # correlated via base
    ts = [torch.tensor(e, requires_grad=True) for e in embs]
    for target in (0.0, 0.3):
        assert orthogonality_loss(ts, target).item() == pytest.approx(_np_orthogonality(embs, target), rel=1e-5)
    loss = orthogonality_loss(ts, 0.3)
    assert loss.item() > 0
    loss.backward()
    assert all(t.grad.abs().sum() > 0 for t in ts)
    assert orthogonality_loss(ts, 0.99).item() == 0.0  # below the target: no penalty
    assert orthogonality_loss(ts[:1]).item() == 0.0
    with pytest.raises(ValueError, match="different batch sizes"):
        orthogonality_loss([ts[0], ts[1][:5]])


def test_informativeness_is_a_hinge_on_the_batch_std():
    z = torch.tensor([[0.0, -2.0, -0.5], [0.0, 2.0, 0.5], [0.0, -2.0, -0.5], [0.0, 2.0, 0.5]], requires_grad=True)
    # per-dimension std (biased): 0, 2, 0.5 -> hinge 1 - sqrt(eps), 0, 0.5 -> mean over 6 dims of 2 categories
    expect = ((1 - np.sqrt(1e-4)) + 0 + (1 - np.sqrt(0.25 + 1e-4))) / 3
    loss = informativeness_loss([z, z])
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    loss.backward()
    assert z.grad[:, 2].abs().sum() > 0 and z.grad[:, 1].abs().sum() == 0


def test_topographic_matches_scipy_and_has_a_gradient():
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(7, 3)), rng.normal(size=(7, 5))
    zt = torch.tensor(z, requires_grad=True)
    for samples in (None, 5):
        m = 7 if samples is None else samples
        expect = 1 - np.corrcoef(pdist(x[:m]), pdist(z[:m]))[0, 1]
        assert topographic_loss(torch.tensor(x), zt, samples).item() == pytest.approx(expect, rel=1e-9)
    loss = topographic_loss(torch.tensor(x), zt)
    loss.backward()
    assert zt.grad.abs().sum() > 0
    assert float(topographic_loss(torch.tensor(x), torch.tensor(3 * x + 1))) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="samples must be >= 3"):
        topographic_loss(torch.tensor(x), zt, samples=2)
