"""Pins for the family encoders and the column transforms (SPEC 8), against independent references:
autoencoder pre-training step by step (seeds, shuffling, batching, cosine schedule, history, log
lines, progress bar, validation batching), the reconstruction MSE, the temporal CNN's head
statistics and blocks, the MLP's layers, and the column transforms' values and messages."""

from __future__ import annotations

import logging
import re
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spinlock_core.seeding import seed_int
from spinlock_core.tokenizer.encoders import MLPEncoder, pretrain_autoencoder, reconstruction_mse

# ----------------------------------------------------------------------------- pre-training reference

#: F = 5 features per row; chunk sizes per pass (7 -> 2 batches of 3, 1 -> one batch, 0 -> skipped, 5 -> 1 batch)
NF = 5
SIZES = (7, 1, 0, 5)


def _rows(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, NF)).astype(np.float32) for n in SIZES]


def _pair():
    """A tiny MLP autoencoder with dropout (so the global RNG's seed matters), same init every call."""
    torch.manual_seed(11)
    enc = MLPEncoder(NF, [6], 3, dropout=0.3)
    return enc, enc.make_decoder()


def _reference(chunks: list[np.ndarray], *, steps, batch_size, lr, seed, log_every):
    """An independent re-implementation of the pre-training loop (module docstring of pretrain)."""
    enc, dec = _pair()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed_int(seed, "tokenizer", 1))
        g = torch.Generator().manual_seed(seed_int(seed, "tokenizer", 0))
        enc.train()
        dec.train()
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)

        def batches():
            while True:
                for c in chunks:
                    x = torch.from_numpy(c)
                    n = x.shape[0]
                    if n == 0:
                        continue
                    perm = torch.randperm(n, generator=g)
                    stop = n - n % batch_size if n >= batch_size else n
                    for b0 in range(0, stop, batch_size):
                        yield x[perm[b0:b0 + batch_size]]

        it, history, seen, acc = batches(), [], [], torch.zeros(())
        since = 0
        for step in range(1, steps + 1):
            for group in opt.param_groups:
                group["lr"] = lr * (0.5 * (1 + math.cos(math.pi * (step - 1) / steps)))
            xb = next(it)
            seen.append(xb.clone())
            loss = F.mse_loss(dec(enc(xb)), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc += loss.detach()
            since += 1
            if step % log_every == 0 or step == steps:
                history.append({"step": step, "loss": float(acc) / since})
                acc.zero_()
                since = 0
    return enc, dec, history, seen


def test_pretraining_matches_an_independent_reference_loop(caplog):
    """Weights, batches [b, F], history and log lines equal a re-implementation: global and shuffle
    seeds from ("tokenizer", 1) and ("tokenizer", 0), empty chunks skipped, partial batches dropped
    unless the chunk is smaller than batch_size, lr * 0.5 (1 + cos(pi s / steps)), means since the
    last entry; the pass cut short is closed before pretrain returns."""
    data = _rows()
    kept, closed = [], []

    def one_pass():
        try:
            yield from data
        finally:
            closed.append(len(kept))

    def chunks():
        kept.append(one_pass())
        return kept[-1]

    seen = []
    enc, dec = _pair()
    enc.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with caplog.at_level(logging.INFO, logger="spinlock_core.tokenizer.encoders.pretrain"):
        res = pretrain_autoencoder(enc, dec, chunks, steps=10, batch_size=3, learning_rate=0.05, seed=4,
                                   progress=lambda d, t: None, log_every=4)
    assert torch.equal(torch.get_rng_state(), before)
    r_enc, r_dec, r_hist, r_seen = _reference(data, steps=10, batch_size=3, lr=0.05, seed=4, log_every=4)
    assert [tuple(b.shape) for b in seen] == [(3, NF), (3, NF), (1, NF), (3, NF)] * 2 + [(3, NF), (3, NF)]
    for got, ref in zip(seen, r_seen):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for (k, v), (k2, v2) in zip(enc.state_dict().items(), r_enc.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=1e-6, atol=1e-7)
    for v, v2 in zip(dec.state_dict().values(), r_dec.state_dict().values()):
        torch.testing.assert_close(v, v2, rtol=1e-6, atol=1e-7)
    assert [h["step"] for h in res.history] == [4, 8, 10]
    assert [sorted(h) for h in res.history] == [["loss", "step"]] * 3
    assert [h["loss"] for h in res.history] == pytest.approx([h["loss"] for h in r_hist], rel=1e-6)
    assert res.final_train_loss == res.history[2]["loss"] != res.history[1]["loss"]
    assert res.val_loss is None and 0 < res.seconds < 60
    assert caplog.messages == [f"pretrain MLPEncoder: step {h['step']}/10, train MSE {h['loss']:.5f}"
                               for h in res.history]
    assert len(kept) == 3 and sorted(closed) == [1, 2, 3]  # the third pass was cut short and closed


def test_pretraining_with_one_row_chunk_and_sizes_at_one():
    """steps = batch_size = log_every = 1 and a learning rate in (0, 1) are accepted; a one-row chunk
    is a batch of its own; the encoder ends frozen and the decoder in eval mode."""
    x = np.arange(NF, dtype=np.float32)[None] / NF
    enc, dec = _pair()
    w0 = enc.net[0].weight.detach().clone()
    res = pretrain_autoencoder(enc, dec, lambda: [x], steps=1, batch_size=1, learning_rate=0.5, seed=0,
                               progress=lambda d, t: None, log_every=1)
    assert [h["step"] for h in res.history] == [1]
    assert not torch.equal(enc.net[0].weight, w0)
    assert not enc.training and not dec.training and not dec.net[0].training
    assert all(not p.requires_grad for p in enc.parameters())
    assert all(p.requires_grad for p in dec.parameters())


class _FakeBar:
    made: list = []

    def __init__(self, **kw):
        self.kw, self.n, self.updates, self.closed = kw, 0, [], 0
        _FakeBar.made.append(self)

    def update(self, k):
        self.updates.append(k)
        self.n += k

    def close(self):
        self.closed += 1


def test_default_progress_is_a_tqdm_bar(monkeypatch):
    """Without ``progress``: tqdm(total=steps, desc="pretrain <class>", unit="step", disable=None,
    leave=False), advanced by one per step and closed once."""
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _FakeBar)
    _FakeBar.made = []
    enc, dec = _pair()
    pretrain_autoencoder(enc, dec, lambda: _rows()[:1], steps=3, batch_size=3, learning_rate=1e-2, seed=0)
    (bar,) = _FakeBar.made
    assert bar.kw == {"total": 3, "desc": "pretrain MLPEncoder", "unit": "step", "disable": None, "leave": False}
    assert bar.updates == [1, 1, 1] and bar.closed == 1


def test_progress_callback_gets_done_and_total():
    """``progress(done, total)`` after every step."""
    done = []
    enc, dec = _pair()
    pretrain_autoencoder(enc, dec, lambda: _rows()[:1], steps=3, batch_size=3, learning_rate=1e-2, seed=0,
                         progress=lambda d, t: done.append((d, t)))
    assert done == [(1, 3), (2, 3), (3, 3)]


def test_validation_batches_are_max_of_batch_size_and_1024():
    """val_loss: eval-mode MSE over the validation rows in batches of max(batch_size, 1024) rows."""
    rng = np.random.default_rng(2)
    train = rng.standard_normal((20, NF)).astype(np.float32)
    val = rng.standard_normal((1100, NF)).astype(np.float32)
    for bs, want in ((8, [1024, 76]), (1100, [1100])):
        sizes = []  # batch sizes seen in eval mode, i.e. by the validation pass
        enc, dec = _pair()
        enc.register_forward_pre_hook(lambda m, args: None if m.training else sizes.append(args[0].shape[0]))
        res = pretrain_autoencoder(enc, dec, lambda: [train], steps=1, batch_size=bs, learning_rate=1e-2, seed=0,
                                   val_chunks=lambda: [val], progress=lambda d, t: None)
        assert sizes == want
        with torch.no_grad():
            ref = float(((dec(enc(torch.from_numpy(val))) - torch.from_numpy(val)) ** 2).double().mean())
        assert res.val_loss == pytest.approx(ref, rel=1e-5)


def test_reconstruction_mse_sums_every_element_over_batches_and_chunks():
    """Sum of squared errors over all elements / element count, rows [n, F] in batches of 1024 by
    default, eval mode (dropout off); no rows -> None."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((1030, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    dec = nn.Linear(2, 3)
    enc.train()
    sizes = []
    enc.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    got = reconstruction_mse(enc, dec, lambda: [a, b])
    assert sizes == [1024, 6, 4]
    assert not enc.training and not dec.training
    x = torch.from_numpy(np.concatenate([a, b])).double()
    with torch.no_grad():
        w1, b1, w2, b2 = (p.double() for p in (enc[0].weight, enc[0].bias, dec.weight, dec.bias))
        ref = float((((x @ w1.T + b1) @ w2.T + b2 - x) ** 2).mean())
    assert got == pytest.approx(ref, rel=1e-5)
    sizes.clear()
    assert reconstruction_mse(enc, dec, [a[:5]], batch_size=2) == pytest.approx(
        float((((x[:5] @ w1.T + b1) @ w2.T + b2 - x[:5]) ** 2).mean()), rel=1e-5)
    assert sizes == [2, 2, 1]
    assert reconstruction_mse(enc, dec, []) is None
    assert reconstruction_mse(enc, dec, [a[:0]]) is None
    with pytest.raises(ValueError, match=r"^reconstruction_mse: a chunk of shape \(1, 3\) holds 1 non-finite values$"):
        reconstruction_mse(enc, dec, [np.array([[0.0, np.nan, 1.0]])])


def test_pretraining_messages_name_the_field_and_value():
    """Refusals: an encoder without ``trained`` (a plain Linear), sizes < 1 by name, lr <= 0, a
    pass without rows (chunks() called once), a non-finite chunk named after the encoder."""
    enc, dec = _pair()
    kw = dict(steps=1, batch_size=1, learning_rate=1e-3, seed=0, progress=lambda d, t: None)
    with pytest.raises(ValueError, match=r"^Linear has no weights to pre-train$"):
        pretrain_autoencoder(nn.Linear(2, 2), dec, lambda: [], **kw)
    with pytest.raises(ValueError, match=r"^chunks must be a zero-argument callable returning an iterable of arrays"):
        pretrain_autoencoder(enc, dec, [np.zeros((2, NF))], **kw)
    for name in ("steps", "batch_size", "log_every"):
        with pytest.raises(ValueError, match=rf"^{name} must be >= 1, got 0$"):
            pretrain_autoencoder(enc, dec, lambda: [], **{**kw, name: 0})
    for lr in (0, -1.0):
        with pytest.raises(ValueError, match=rf"^learning_rate must be > 0, got {lr}$"):
            pretrain_autoencoder(enc, dec, lambda: [], **{**kw, "learning_rate": lr})
    calls = []

    def empty():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("chunks() called again after an empty pass")
        return [np.zeros((0, NF), np.float32)]

    with pytest.raises(ValueError, match=r"^pretrain MLPEncoder: a pass over chunks\(\) gave no rows$"):
        pretrain_autoencoder(enc, dec, empty, **kw)
    bad = np.full((2, NF), np.inf, np.float32)
    with pytest.raises(ValueError, match=r"^pretrain MLPEncoder: a chunk of shape \(2, 5\) holds 10 non-finite"):
        pretrain_autoencoder(enc, dec, lambda: [bad], **kw)


# ----------------------------------------------------------------------------- temporal CNN

from spinlock_core.tokenizer.encoders.temporal_cnn import (  # noqa: E402
    ResidualBlock1d,
    TemporalCNNEncoder,
    TemporalDecoder,
    _slope_weights,
    parse_architecture,
)


def _randomise(module: nn.Module, seed: int) -> None:
    """Every parameter (GroupNorm affine included) drawn N(0, 0.5^2), so no layer is an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def _ref_block(h, blk, groups, k):
    """act(h + norm(conv(act(norm(conv(h)))))) with functional ops."""
    c1, n1, _, c2, n2 = blk.body
    z = F.conv1d(h, c1.weight, c1.bias, padding=k // 2)
    z = F.gelu(F.group_norm(z, groups, n1.weight, n1.bias, eps=1e-5))
    z = F.conv1d(z, c2.weight, c2.bias, padding=k // 2)
    z = F.group_norm(z, groups, n2.weight, n2.bias, eps=1e-5)
    return F.gelu(h + z)


def _np_slope(h: np.ndarray) -> np.ndarray:
    """Least-squares slope over the last axis, by numpy's polyfit."""
    t = np.arange(h.shape[-1])
    flat = h.reshape(-1, h.shape[-1]).astype(np.float64)
    return np.array([np.polyfit(t, row, 1)[0] for row in flat]).reshape(h.shape[:-1])


def test_temporal_encoder_matches_a_functional_reference():
    """[B=4, T'=6, F=3] -> [4, 5]: stem conv (padding k//2, k = 5) -> GroupNorm(gcd(8, 12) = 4 groups)
    -> GELU, 2 residual blocks, head over [mean, last, least-squares slope] of each of C = 12 channels."""
    enc = TemporalCNNEncoder(3, 6, embedding_dim=5, blocks=2, hidden_channels=12, kernel_size=5).eval()
    _randomise(enc, 0)
    norms = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    assert [m.num_groups for m in norms] == [4] * 5 and all(m.num_channels == 12 for m in norms)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in convs] == \
        [(3, 12, (5,), (2,))] + [(12, 12, (5,), (2,))] * 4
    assert [type(m) for m in enc.blocks[0].body] == [nn.Conv1d, nn.GroupNorm, nn.GELU, nn.Conv1d, nn.GroupNorm]
    assert isinstance(enc.blocks[1].act, nn.GELU) and len(enc.blocks) == 2
    assert (enc.head.in_features, enc.head.out_features) == (36, 5)
    x = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = enc(x)
        s = enc.stem
        h = F.conv1d(x.transpose(1, 2), s[0].weight, s[0].bias, padding=2)
        h = F.gelu(F.group_norm(h, 4, s[1].weight, s[1].bias, eps=1e-5))
        for blk in enc.blocks:
            h = _ref_block(h, blk, 4, 5)
        hn = h.numpy()
        summary = np.concatenate([hn.mean(-1), hn[..., -1], _np_slope(hn)], axis=1)
        ref = summary @ enc.head.weight.numpy().T.astype(np.float64) + enc.head.bias.numpy()
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_temporal_decoder_matches_a_functional_reference():
    """[B=4, D=5] -> [4, T'=6, F=3]: Linear to C*T' = 12*6 read as [B, C, T'] (channel-major),
    GroupNorm -> GELU -> residual block -> conv to F channels, then [B, T', F]."""
    enc = TemporalCNNEncoder(3, 6, embedding_dim=5, blocks=1, hidden_channels=12, kernel_size=5)
    dec = enc.make_decoder().eval()
    assert isinstance(dec, TemporalDecoder)
    _randomise(dec, 2)
    assert (dec.expand.in_features, dec.expand.out_features) == (5, 72)
    assert [type(m) for m in dec.body] == [nn.GroupNorm, nn.GELU, ResidualBlock1d, nn.Conv1d]
    assert (dec.body[0].num_groups, dec.body[0].num_channels) == (4, 12)
    out_conv = dec.body[3]
    assert (out_conv.in_channels, out_conv.out_channels, out_conv.kernel_size, out_conv.padding) == (12, 3, (5,), (2,))
    assert dec.body[2].body[0].kernel_size == (5,)
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = dec(z)
        h = (z @ dec.expand.weight.T + dec.expand.bias).reshape(4, 12, 6)
        h = F.gelu(F.group_norm(h, 4, dec.body[0].weight, dec.body[0].bias, eps=1e-5))
        h = _ref_block(h, dec.body[2], 4, 5)
        ref = F.conv1d(h, out_conv.weight, out_conv.bias, padding=2).transpose(1, 2)
    assert got.shape == (4, 6, 3)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T, want", [(1, [0.0]), (2, [-1.0, 1.0]), (4, [-0.3, -0.1, 0.1, 0.3])])
def test_slope_weights_are_centred_state_index_over_its_square_sum(T, want):
    """w [T'] = (t - mean t) / sum (t - mean t)^2 (float32), zeros for one state; not in the state dict."""
    w = _slope_weights(T)
    assert w.dtype == torch.float32 and w.shape == (T,)
    np.testing.assert_allclose(w.numpy(), want, rtol=1e-6, atol=1e-7)
    enc = TemporalCNNEncoder(2, T, embedding_dim=3, blocks=1, hidden_channels=4, kernel_size=3)
    torch.testing.assert_close(enc.slope_weights, torch.tensor(want, dtype=torch.float32))
    assert "slope_weights" not in enc.state_dict()


def test_temporal_defaults_kwargs_and_names():
    """Defaults embedding_dim 128, blocks 3, hidden_channels 64, kernel_size 5, no prefix; init_kwargs
    by name; the decoder's default kernel is 5; output names checked against the F input names."""
    enc = TemporalCNNEncoder(3, 6)
    assert enc.init_kwargs == {"num_features": 3, "num_states": 6, "embedding_dim": 128, "blocks": 3,
                               "hidden_channels": 64, "kernel_size": 5, "name_prefix": ""}
    assert (enc.input_dim, enc.output_dim, enc.num_features, enc.num_states) == (3, 128, 3, 6)
    assert len(enc.blocks) == 3 and enc.stem[0].kernel_size == (5,) and enc.stem[0].out_channels == 64
    assert enc.output_names()[:2] == ["emb_000", "emb_001"] and len(enc.output_names()) == 128
    dec = TemporalDecoder(4, 6, 3, 8)
    assert [m.kernel_size for m in dec.modules() if isinstance(m, nn.Conv1d)] == [(5,)] * 3
    small = TemporalCNNEncoder(3, 6, embedding_dim=2, blocks=1, hidden_channels=4, kernel_size=3, name_prefix="tmp_")
    assert small.output_names(["a", "b", "c"]) == ["tmp_emb_000", "tmp_emb_001"]
    with pytest.raises(ValueError, match=r"^TemporalCNNEncoder reads 3 input columns, but 2 names were given$"):
        small.output_names(["a", "b"])
    with pytest.raises(ValueError, match=r"^TemporalCNNEncoder expects 6 states \[B, 6, 3\]; got 5$"):
        small(torch.zeros(1, 5, 3))
    kw = TemporalCNNEncoder.kwargs_from_params({"architecture": "resnet1d_2", "hidden_channels": 8}, input_dim=3,
                                               num_states=6, feature_names=None, name_prefix="p_")
    assert kw == {"hidden_channels": 8, "blocks": 2, "num_features": 3, "num_states": 6, "name_prefix": "p_"}


def test_temporal_sizes_at_one_are_accepted():
    """Every size may be 1 (one state, one channel, kernel 1): GroupNorm(1, 1), slope weights 0."""
    enc = TemporalCNNEncoder(1, 1, embedding_dim=1, blocks=1, hidden_channels=1, kernel_size=1)
    assert enc(torch.ones(2, 1, 1)).shape == (2, 1)
    assert enc.make_decoder()(torch.ones(2, 1)).shape == (2, 1, 1)
    assert TemporalCNNEncoder(2, 3, embedding_dim=2, blocks=1, hidden_channels=3, kernel_size=3).stem[1].num_groups == 1


@pytest.mark.parametrize("name", ["num_features", "num_states", "embedding_dim", "blocks", "hidden_channels",
                                  "kernel_size"])
def test_temporal_size_below_one_is_named(name):
    """A size < 1 is reported as {name: value}."""
    kw = dict(num_features=2, num_states=3, embedding_dim=2, blocks=1, hidden_channels=4, kernel_size=3)
    kw[name] = 0 if name != "kernel_size" else -1
    with pytest.raises(ValueError, match=rf"^sizes must be >= 1, got \{{'{name}': {kw[name]}\}}$"):
        TemporalCNNEncoder(**kw)


def test_temporal_even_kernel_and_architecture_messages():
    """An even kernel (encoder or decoder) and a bad architecture string, with the value reported."""
    with pytest.raises(ValueError, match=r"^kernel_size must be odd \(same-length convolutions over the states\), got 4$"):
        TemporalCNNEncoder(2, 3, kernel_size=4)
    with pytest.raises(ValueError, match=r"^kernel_size must be odd .*, got 2$"):
        TemporalDecoder(4, 6, 3, 8, kernel_size=2)
    with pytest.raises(ValueError, match=r"^sizes must be >= 1, got \{'num_features': 0\}$"):
        TemporalDecoder(4, 6, 0, 8)
    assert parse_architecture("resnet1d_1") == 1 and parse_architecture("resnet1d_12") == 12
    for bad in ("resnet1d_0", "resnet1d_", "xresnet1d_2"):
        with pytest.raises(ValueError, match=rf"^architecture must be 'resnet1d_<blocks>' with blocks >= 1, "
                                             rf"e.g. 'resnet1d_3'; got '{bad}'$"):
            parse_architecture(bad)


# ----------------------------------------------------------------------------- MLP

from spinlock_core.tokenizer.encoders.mlp import MLPDecoder, _activation, _mlp  # noqa: E402


def _layers(net: nn.Sequential) -> list:
    """(kind, widths) per layer: Linear (in, out), BatchNorm1d width, Dropout p, activation class."""
    out = []
    for m in net:
        if isinstance(m, nn.Linear):
            out.append(("lin", m.in_features, m.out_features))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("bn", m.num_features))
        elif isinstance(m, nn.Dropout):
            out.append(("drop", m.p))
        else:
            out.append(type(m).__name__)
    return out


def test_mlp_encoder_layers_kwargs_and_mirror_decoder():
    """[B, 5] -> [B, 3] through hidden [8, 6, 4]: Linear -> BatchNorm1d(width) -> act -> Dropout per
    hidden layer; the decoder mirrors 3 -> 4 -> 6 -> 8 -> 5 with the same act and batch norm, no dropout."""
    enc = MLPEncoder(5, [8, 6, 4], 3, dropout=0.25, activation="tanh", batch_norm=True, name_prefix="m_")
    assert enc.init_kwargs == {"input_dim": 5, "hidden_dims": [8, 6, 4], "output_dim": 3, "dropout": 0.25,
                               "activation": "tanh", "batch_norm": True, "name_prefix": "m_"}
    assert (enc.input_dim, enc.output_dim) == (5, 3)
    hidden = lambda w: [("lin", *w), ("bn", w[1]), "Tanh", ("drop", 0.25)]  # noqa: E731
    assert _layers(enc.net) == [*hidden((5, 8)), *hidden((8, 6)), *hidden((6, 4)), ("lin", 4, 3)]
    dec = enc.make_decoder()
    assert isinstance(dec, MLPDecoder)
    plain = lambda w: [("lin", *w), ("bn", w[1]), "Tanh"]  # noqa: E731
    assert _layers(dec.net) == [*plain((3, 4)), *plain((4, 6)), *plain((6, 8)), ("lin", 8, 5)]
    assert enc.output_names(list("abcde")) == ["m_emb_000", "m_emb_001", "m_emb_002"]
    with pytest.raises(ValueError, match=r"^MLPEncoder reads 5 input columns, but 4 names were given$"):
        enc.output_names(list("abcd"))
    with pytest.raises(ValueError, match=r"^MLPEncoder expects 5 features per row \[B, 5\]; got 4$"):
        enc(torch.zeros(2, 4))


def test_mlp_defaults_and_empty_hidden():
    """Defaults: relu, no batch norm, no dropout, no prefix (encoder and decoder); no hidden layer is
    one Linear; widths of 1 are accepted."""
    enc = MLPEncoder(5, [4], 2)
    assert enc.init_kwargs == {"input_dim": 5, "hidden_dims": [4], "output_dim": 2, "dropout": 0.0,
                               "activation": "relu", "batch_norm": False, "name_prefix": ""}
    assert _layers(enc.net) == [("lin", 5, 4), "ReLU", ("lin", 4, 2)]
    assert enc.output_names() == ["emb_000", "emb_001"]
    assert _layers(MLPDecoder(2, [4], 5).net) == [("lin", 2, 4), "ReLU", ("lin", 4, 5)]
    assert _layers(MLPEncoder(5, [], 3).net) == [("lin", 5, 3)]
    one = MLPEncoder(1, [1], 1)
    assert one(torch.ones(2, 1)).shape == (2, 1)
    kw = MLPEncoder.kwargs_from_params({"hidden_dims": [4], "output_dim": 2}, input_dim=5, num_states=None,
                                       feature_names=None, name_prefix="s_")
    assert kw == {"hidden_dims": [4], "output_dim": 2, "input_dim": 5, "name_prefix": "s_"}


def test_mlp_forward_matches_matrix_products():
    """Without batch norm or dropout: relu(x W1^T + b1) W2^T + b2 on [B=3, F=4] rows."""
    torch.manual_seed(2)
    enc = MLPEncoder(4, [6], 2).eval()
    x = torch.randn(3, 4)
    w1, b1, w2, b2 = enc.net[0].weight, enc.net[0].bias, enc.net[2].weight, enc.net[2].bias
    with torch.no_grad():
        torch.testing.assert_close(enc(x), torch.relu(x @ w1.T + b1) @ w2.T + b2)


def test_mlp_size_and_dropout_messages():
    """A width < 1 reports every width; dropout must lie in [0, 1) (0 allowed, 1 refused)."""
    with pytest.raises(ValueError, match=r"^input_dim, hidden_dims and output_dim must be >= 1, got \[5, 0, 3\]$"):
        MLPEncoder(5, [0], 3)
    with pytest.raises(ValueError, match=r"^input_dim, hidden_dims and output_dim must be >= 1, got \[2, 4, 0\]$"):
        MLPDecoder(2, [4], 0)
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"^dropout must lie in \[0, 1\), got {p}$"):
            MLPEncoder(5, [4], 2, dropout=p)
    assert not any(isinstance(m, nn.Dropout) for m in MLPEncoder(5, [4], 2, dropout=0.0).modules())
    assert _layers(_mlp([3, 2, 1], "relu", 0.9, False)) == [("lin", 3, 2), "ReLU", ("drop", 0.9), ("lin", 2, 1)]


def test_activation_builds_the_named_module_and_lists_known_names():
    """Known names give a fresh module of their class; an unknown one lists every known name."""
    assert type(_activation("elu")) is nn.ELU and type(_activation("relu")) is nn.ReLU
    with pytest.raises(ValueError, match=r"^unknown activation 'swish'; known: gelu, relu, tanh, silu, elu, "
                                         r"leaky_relu, sigmoid, softplus$"):
        _activation("swish")
    with pytest.raises(ValueError, match=r"^unknown activation 'swish'"):
        MLPEncoder(5, [4], 2, activation="swish")


# ----------------------------------------------------------------------------- column transforms

from spinlock_core.tokenizer import column_transforms as ct  # noqa: E402

#: every statistic of the training rows names its input "x_train"; every transform names it "x"
_X_TRAIN_FUNCS = [ct.excess_kurtosis, ct.quantile_ratio, ct.log_scale, ct.mad_stats, ct.low_variance, ct.zscore_stats,
                  lambda x: ct.heavy_tailed(x, "none", 0.0), lambda x: ct.stratified_cap_bounds(x, [0, 0, 0])]
_X_FUNCS = [lambda x: ct.signed_log(x, [1.0]), lambda x: ct.mad_cap(x, [0.0], [1.0]),
            lambda x: ct.clip_columns(x, [0.0], [1.0]), lambda x: ct.apply_zscore(x, [0.0], [1.0])]


@pytest.mark.parametrize("i", range(len(_X_TRAIN_FUNCS)))
def test_statistics_name_x_train_in_the_shape_message(i):
    """A [3] or [3, 1, 1] input is refused naming ``x_train`` and the shape."""
    with pytest.raises(ValueError, match=r"^x_train must be a 2-D \[N, F\] matrix, got shape \(3,\)$"):
        _X_TRAIN_FUNCS[i](np.ones(3))
    with pytest.raises(ValueError, match=r"^x_train must be a 2-D \[N, F\] matrix, got shape \(3, 1, 1\)$"):
        _X_TRAIN_FUNCS[i](np.ones((3, 1, 1)))


@pytest.mark.parametrize("i", range(len(_X_FUNCS)))
def test_transforms_name_x_in_the_shape_message(i):
    """A [3] input is refused naming ``x`` and the shape."""
    with pytest.raises(ValueError, match=r"^x must be a 2-D \[N, F\] matrix, got shape \(3,\)$"):
        _X_FUNCS[i](np.ones(3))


def test_column_lists_in_messages_stop_after_ten():
    """Up to 10 columns are listed (names or indices), then " and <k> more"."""
    x = np.full((2, 12), np.inf)
    with pytest.raises(ValueError, match=r"^infinite values in columns 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more$"):
        ct.nan_to_zero(x, np.zeros(12, bool))
    with pytest.raises(ValueError, match=r"^infinite values in columns 0, 1, 2, 3, 4, 5, 6, 7, 8, 9$"):
        ct.nan_to_zero(x[:, :10], np.zeros(10, bool))
    names = [f"c{j}" for j in range(11)]
    y = np.zeros((3, 11))
    y[1, :] = np.nan
    with pytest.raises(ValueError, match=r"^NaN in columns not documented to hold NaN: c1, c2, c3, c4, c5, c6, c7, "
                                         r"c8, c9, c10$"):
        ct.nan_to_zero(y, np.arange(11) == 0, names)


def test_nan_to_zero_messages_and_per_realization_axes():
    """[N=2, M=3, F=2]: a column's NaN anywhere in the realizations counts; mask dtype/shape and name
    count are reported; documented NaN become 0 (not 1), undocumented ones are named."""
    x = np.ones((2, 3, 2))
    x[0, 2, 1] = np.nan
    out = ct.nan_to_zero(x, np.array([False, True]), ["a", "b"])
    assert out[0, 2, 1] == 0.0 and out.dtype == np.float64 and np.isnan(x[0, 2, 1])
    with pytest.raises(ValueError, match=r"^NaN in columns not documented to hold NaN: b$"):
        ct.nan_to_zero(x, np.array([True, False]), ["a", "b"])
    x[1, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"^infinite values in columns a$"):
        ct.nan_to_zero(x, np.array([True, True]), ["a", "b"])
    with pytest.raises(ValueError, match=r"^documented_mask must be a bool array of shape \(2,\), got int64 \(2,\)$"):
        ct.nan_to_zero(np.ones((3, 2)), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"^documented_mask must be a bool array of shape \(2,\), got bool \(3,\)$"):
        ct.nan_to_zero(np.ones((3, 2)), np.ones(3, bool))
    with pytest.raises(ValueError, match=r"^3 names for 2 columns$"):
        ct.nan_to_zero(np.ones((3, 2)), np.ones(2, bool), ["a", "b", "c"])
    np.testing.assert_array_equal(ct.nan_to_zero(np.ones((4, 2)), np.zeros(2, bool)), np.ones((4, 2)))


def test_training_rows_messages_report_counts_and_dtype():
    """Exactly 2 remaining rows are enough; fewer reports rows, split size and diverged in the split."""
    d = np.array([False, True, False, True])
    assert ct.training_rows(d, np.array([True, True, True, False])).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match=r"^only 1 training rows remain \(3 in the split, 2 of them diverged\); "
                                         r"cleaning statistics need at least 2$"):
        ct.training_rows(np.array([False, True, True, True]), np.array([True, True, True, False]))
    with pytest.raises(ValueError, match=r"^diverged must be a 1-D bool array, got dtype int64 and shape \(2,\)$"):
        ct.training_rows(np.array([0, 1]), np.array([True, True]))
    with pytest.raises(ValueError, match=r"^split_mask must be a 1-D bool array, got dtype bool and shape \(2, 1\)$"):
        ct.training_rows(np.array([False, False]), np.ones((2, 1), bool))
    with pytest.raises(ValueError, match=r"^diverged has 2 rows but split_mask has 3$"):
        ct.training_rows(np.zeros(2, bool), np.ones(3, bool))


def test_excess_kurtosis_and_quantile_ratio_hand_values():
    """[5, 3]: kurtosis of (0, 0, 0, 0, 10) is 832 / 16^2 - 3 = 0.25, scale-free (also at variance
    < 1), 0 for a constant column. [101, 4] quantile ratios: 98 / 50 for a ramp (also scaled by
    0.01), inf for a spike with small tails, 0 for a constant column."""
    x = np.array([[0.0, 3.0, 0.0]] * 4 + [[10.0, 3.0, 0.1]])
    np.testing.assert_allclose(ct.excess_kurtosis(x), [0.25, 0.0, 0.25], rtol=1e-12)
    ramp = np.arange(101.0)
    spike = np.zeros(101)
    spike[0], spike[-1] = -0.25, 0.25
    spike[1], spike[-2] = -0.25, 0.25
    q = ct.quantile_ratio(np.column_stack([ramp, ramp * 0.01, spike, np.full(101, 2.0)]))
    np.testing.assert_allclose(q[:2], [1.96, 1.96], rtol=1e-12)
    assert q[2] == np.inf and q[3] == 0.0


def test_heavy_tailed_none_rule_and_strict_threshold():
    """The "none" rule gives -inf per column [F] and flags nothing, even at threshold -inf."""
    heavy, stat = ct.heavy_tailed(np.ones((4, 3)), "none", -np.inf)
    assert heavy.tolist() == [False] * 3 and stat.tolist() == [-np.inf] * 3
    with pytest.raises(ValueError, match=r"^unknown heavy-tail rule 'iqr'; known: \['kurtosis', 'none', "
                                         r"'quantile_ratio'\]$"):
        ct.heavy_tailed(np.ones((4, 3)), "iqr", 1.0)
    with pytest.raises(ValueError, match=r"^heavy-tail threshold is NaN$"):
        ct.heavy_tailed(np.ones((4, 3)), "kurtosis", np.nan)


def test_log_scale_and_signed_log_hand_values():
    """[5, 4] scales: median |x|, the mean |x| where the median is 0 (also below 1), 1 for an all-zero
    column, a median of exactly 1 kept. signed_log accepts scales in (0, 1) and lists every bad scale."""
    x = np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 1.0], [2.0, 0.5, 0.0, 9.0],
                  [-4.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ct.log_scale(x), [1.2, 0.1, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(ct.signed_log([[-1.0, 3.0]], [0.5, 0.25]), [[-np.log(3.0), np.log(13.0)]], rtol=1e-12)
    with pytest.raises(ValueError, match=r"^signed-log scales must be finite and > 0; bad columns: \[1, 2, 3, 4\]$"):
        ct.signed_log(np.ones((2, 5)), [1.0, np.inf, 0.0, -1.0, np.nan])
    with pytest.raises(ValueError, match=r"^scale must have shape \(2,\), got \(3,\)$"):
        ct.signed_log(np.ones((2, 2)), [1.0, 1.0, 1.0])


def test_mad_stats_per_column_on_a_non_square_matrix():
    """[5, 2]: medians (2, 20) and MADs (1, 5) column by column."""
    x = np.array([[0.0, 10.0], [1.0, 15.0], [2.0, 20.0], [3.0, 25.0], [100.0, 0.0]])
    med, mad = ct.mad_stats(x)
    assert med.tolist() == [2.0, 15.0] and mad.tolist() == [1.0, 5.0]


def test_clip_columns_bounds_checks():
    """Equal bounds are allowed; a NaN in either bound or low > high is refused; shapes are named."""
    np.testing.assert_array_equal(ct.clip_columns([[0.0, 5.0], [3.0, -5.0]], [1.0, -np.inf], [1.0, 2.0]),
                                  [[1.0, 2.0], [1.0, -5.0]])
    for lo, hi in (([np.nan, 0.0], [1.0, 1.0]), ([0.0, 0.0], [1.0, np.nan]), ([0.0, 2.0], [1.0, 1.0])):
        with pytest.raises(ValueError, match=r"^bounds must be non-NaN with low <= high$"):
            ct.clip_columns(np.ones((2, 2)), lo, hi)
    with pytest.raises(ValueError, match=r"^low must have shape \(2,\), got \(3,\)$"):
        ct.clip_columns(np.ones((2, 2)), [0.0] * 3, [1.0] * 2)
    with pytest.raises(ValueError, match=r"^high must have shape \(2,\), got \(1,\)$"):
        ct.clip_columns(np.ones((2, 2)), [0.0] * 2, [1.0])
    with pytest.raises(ValueError, match=r"^median must have shape \(2,\), got \(1,\)$"):
        ct.mad_cap(np.ones((3, 2)), [0.0], [1.0, 1.0])


def test_low_variance_and_zscore_on_non_square_rows():
    """[3, 2] rows: population variance per column against the floor (0 allowed, NaN refused);
    z-score statistics per column; every zero-std column listed."""
    x = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 6.0]])
    assert ct.low_variance(x).tolist() == [True, False]
    assert ct.low_variance(x, 0.0).tolist() == [False, False]
    assert ct.low_variance(x, 14 / 3 + 1e-9).tolist() == [True, True]
    assert ct.low_variance(x, 14 / 3 - 1e-9).tolist() == [True, False]
    for bad in (-1.0, np.nan):
        with pytest.raises(ValueError, match=rf"^variance floor must be >= 0, got {bad}$"):
            ct.low_variance(x, bad)
    mean, std = ct.zscore_stats(np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]]))
    np.testing.assert_allclose(mean, [3.0, 1.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), np.sqrt(2.0)])
    with pytest.raises(ValueError, match=r"^columns with zero standard deviation cannot be z-scored: \[0, 2\]$"):
        ct.zscore_stats(np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 2.0]]))


def test_stratified_bounds_judge_strata_of_exactly_min_stratum_rows():
    """A stratum of exactly min_stratum rows widens the pooled hull; labels must be [N]."""
    x = np.concatenate([np.linspace(-1, 1, 8), np.linspace(9, 11, 4)])[:, None]
    labels = np.array([0] * 8 + [1] * 4)
    p_lo, p_hi = ct.cap_bounds(*ct.mad_stats(x), 1.0)
    s_med = np.median(x[8:, 0])
    s_mad = np.median(np.abs(x[8:, 0] - s_med))
    lo, hi = ct.stratified_cap_bounds(x, labels, k=1.0, min_stratum=4)
    assert hi[0] == pytest.approx(max(p_hi[0], s_med + 1.4826 * s_mad)) and hi[0] > p_hi[0]
    assert lo[0] <= p_lo[0]
    lo5, hi5 = ct.stratified_cap_bounds(x, labels, k=1.0, min_stratum=5)
    assert hi5[0] == pytest.approx(p_hi[0])
    with pytest.raises(ValueError, match=r"^strata_labels must have shape \(12,\), got \(11,\)$"):
        ct.stratified_cap_bounds(x, labels[:11])


# ----------------------------------------------------------------------------- pooled, registry, chunks

from spinlock_core.tokenizer.encoders import PooledIdentityEncoder, build_decoder, build_encoder  # noqa: E402
from spinlock_core.tokenizer.encoders.encode import as_rows, iter_chunks, resolve_device  # noqa: E402
from spinlock_core.tokenizer.encoders.registry import seeded  # noqa: E402


def test_pooled_values_names_and_kwargs_on_non_square_input():
    """[B=2, T'=5, F=3] -> [2, 3 * 2] with the default (mean, std); final and slope (np.polyfit) on
    the same rows; names from feature_names, input_names or f000..."""
    x = np.random.default_rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    enc = PooledIdentityEncoder(3, 5)
    assert enc.statistics == ["mean", "std"] and enc.output_dim == 6 and enc.input_dim == 3
    np.testing.assert_allclose(enc(torch.from_numpy(x)).numpy(), np.concatenate([x.mean(1), x.std(1)], 1),
                               rtol=1e-5, atol=1e-6)
    assert enc.output_names() == ["f000_mean", "f001_mean", "f002_mean", "f000_std", "f001_std", "f002_std"]
    two = PooledIdentityEncoder(3, 5, ("slope", "final"), feature_names=("a", "b", "c"))
    slope = np.array([[np.polyfit(np.arange(5), x[b, :, f].astype(np.float64), 1)[0] for f in range(3)]
                      for b in range(2)])
    np.testing.assert_allclose(two(torch.from_numpy(x)).numpy(), np.concatenate([slope, x[:, -1]], 1),
                               rtol=1e-5, atol=1e-6)
    assert two.init_kwargs == {"num_features": 3, "num_states": 5, "statistics": ["slope", "final"],
                               "feature_names": ["a", "b", "c"]}
    assert two.output_names() == ["a_slope", "b_slope", "c_slope", "a_final", "b_final", "c_final"]
    assert two.output_names(["u", "v", "w"])[:2] == ["u_slope", "v_slope"]
    with pytest.raises(ValueError, match=r"^PooledIdentityEncoder reads 3 input columns, but 2 names were given$"):
        two.output_names(["u", "v"])
    with pytest.raises(ValueError, match=r"^PooledIdentityEncoder expects 5 states \[B, 5, 3\]; got 4$"):
        two(torch.zeros(1, 4, 3))
    kw = PooledIdentityEncoder.kwargs_from_params({"statistics": ["mean"]}, input_dim=3, num_states=5,
                                                  feature_names=["a", "b", "c"], name_prefix="x_")
    assert kw == {"statistics": ["mean"], "num_features": 3, "num_states": 5, "feature_names": ["a", "b", "c"]}


def test_pooled_settings_messages_and_boundaries():
    """Sizes of 1 and slope with exactly 2 states are accepted; every refusal names its values."""
    assert PooledIdentityEncoder(1, 1, ["mean"])(torch.ones(2, 1, 1)).tolist() == [[1.0], [1.0]]
    assert PooledIdentityEncoder(1, 2, ["slope"])(torch.tensor([[[1.0], [3.0]]])).tolist() == [[2.0]]
    with pytest.raises(ValueError, match=r"^unknown statistics \['median', 'p90'\]; known: mean, std, min, max, "
                                         r"final, slope$"):
        PooledIdentityEncoder(2, 3, ["mean", "median", "p90"])
    for stats in ([], ["std", "std"]):
        with pytest.raises(ValueError, match=rf"^name each statistic once, at least one; got {re.escape(str(stats))}$"):
            PooledIdentityEncoder(2, 3, stats)
    for f, t in ((0, 3), (2, 0)):
        with pytest.raises(ValueError, match=rf"^num_features and num_states must be >= 1, got {f} and {t}$"):
            PooledIdentityEncoder(f, t, ["mean"])
    with pytest.raises(ValueError, match=r"^the slope needs at least 2 states, got num_states = 1$"):
        PooledIdentityEncoder(2, 1, ["mean", "slope"])


def test_build_encoder_passes_feature_names_prefix_and_seed():
    """feature_names (any sequence) reach the pooled encoder as a list; the seed draws the weights as
    torch.manual_seed(seed) would, under a forked RNG; vector encoders need no num_states."""
    enc = build_encoder("PooledIdentityEncoder", None, input_dim=2, num_states=3, feature_names=("a", "b"))
    assert enc.feature_names == ["a", "b"] and enc.output_names() == ["a_mean", "b_mean", "a_std", "b_std"]
    assert build_encoder("PooledIdentityEncoder", {}, input_dim=2, num_states=3).feature_names is None
    torch.manual_seed(99)
    before = torch.get_rng_state()
    got = build_encoder("MLPEncoder", {"hidden_dims": [4], "output_dim": 2}, input_dim=3, seed=5, name_prefix="q_")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(5)
    ref = MLPEncoder(3, [4], 2)
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), ref.state_dict().values()))
    assert got.output_names() == ["q_emb_000", "q_emb_001"]
    torch.manual_seed(99)
    dec = build_decoder(got, seed=7)
    torch.manual_seed(7)
    ref_dec = got.make_decoder()
    assert all(torch.equal(a, b) for a, b in zip(dec.state_dict().values(), ref_dec.state_dict().values()))
    with pytest.raises(ValueError, match=r"^unknown encoder 'GRU'; known: IdentityEncoder, MLPEncoder, "
                                         r"TemporalCNNEncoder, PooledIdentityEncoder$"):
        build_encoder("GRU", None, input_dim=2)
    with pytest.raises(ValueError, match=r"^TemporalCNNEncoder reads sequences \[B, T', F\]: give num_states \(T'\)$"):
        build_encoder("TemporalCNNEncoder", None, input_dim=2)
    with pytest.raises(ValueError, match=r"^PooledIdentityEncoder has no weights to pre-train, hence no decoder$"):
        build_decoder(enc)
    with pytest.raises(ValueError, match=r"^Linear has no weights to pre-train, hence no decoder$"):
        build_decoder(nn.Linear(2, 2))


def test_seeded_forks_only_with_a_seed():
    """seeded(s): draws as after manual_seed(s), caller's state restored; seeded(None): plain draws."""
    torch.manual_seed(1)
    before = torch.get_rng_state()
    with seeded(3):
        a = torch.rand(2)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(3)
    assert torch.equal(a, torch.rand(2))
    torch.manual_seed(1)
    with seeded(None):
        b = torch.rand(2)
    torch.manual_seed(1)
    assert torch.equal(b, torch.rand(2))


def test_as_rows_iter_chunks_and_resolve_device():
    """Chunks become float32 [n, F] / [n, T', F] tensors; other ranks and non-finite values are
    refused with the caller's name; a callable is called per pass; device names resolve."""
    t = as_rows(np.arange(6, dtype=np.float64).reshape(2, 3), "me")
    assert t.dtype == torch.float32 and t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert as_rows(np.zeros((2, 3, 4)), "me").shape == (2, 3, 4)
    for shape in ((3,), (1, 2, 3, 4)):
        with pytest.raises(ValueError, match=rf"^me: chunks must be \[n, F\] or \[n, T', F\] arrays, got shape "
                                             rf"{re.escape(str(shape))}$"):
            as_rows(np.zeros(shape), "me")
    bad = np.zeros((2, 3))
    bad[0, 1], bad[1, 2] = np.nan, -np.inf
    with pytest.raises(ValueError, match=r"^me: a chunk of shape \(2, 3\) holds 2 non-finite values$"):
        as_rows(bad, "me")
    parts = [np.zeros((1, 2))]
    assert iter_chunks(parts) is parts and iter_chunks(lambda: parts) is parts
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev and resolve_device("cpu") == dev
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == dev
        with pytest.raises(ValueError, match=r"'cuda' requested but no CUDA device is available"):
            resolve_device("cuda")


def _ref_hull(x, labels, k, min_stratum):
    """Independent numpy version of the stratified hull: pooled median +/- k 1.4826 MAD, widened by
    every stratum of >= min_stratum rows (a stratum with MAD 0 contributes its median)."""
    def bounds(v):
        med = np.median(v, axis=0)
        half = k * 1.4826 * np.median(np.abs(v - med), axis=0)
        return np.where(half > 0, med - half, -np.inf), np.where(half > 0, med + half, np.inf), med

    lo, hi, _ = bounds(x)
    for u in sorted(set(labels.tolist())):
        rows = labels == u
        if rows.sum() >= min_stratum:
            s_lo, s_hi, med = bounds(x[rows])
            lo = np.minimum(lo, np.where(np.isfinite(s_lo), s_lo, med))
            hi = np.maximum(hi, np.where(np.isfinite(s_hi), s_hi, med))
    return lo, hi


def test_stratified_bounds_against_a_reference_with_small_and_constant_strata():
    """[14, 2]: a 2-row stratum sorted first is skipped (the others still judged), a spread stratum
    widens the hull per column, a constant stratum (MAD 0) widens it to its median."""
    a = np.array([[50.0, -40.0], [51.0, -41.0]])
    b = np.column_stack([np.linspace(-1, 1, 8), np.linspace(0, 6, 8)])
    c = np.column_stack([np.full(4, 10.0), np.linspace(20, 26, 4)])
    x = np.concatenate([a, b, c])
    labels = np.array(["a"] * 2 + ["b"] * 8 + ["c"] * 4)
    lo, hi = ct.stratified_cap_bounds(x, labels, k=1.0, min_stratum=4)
    r_lo, r_hi = _ref_hull(x, labels, 1.0, 4)
    np.testing.assert_allclose(lo, r_lo, rtol=1e-12)
    np.testing.assert_allclose(hi, r_hi, rtol=1e-12)
    assert hi[0] == 10.0 and lo.shape == hi.shape == (2,)


def test_stratified_bounds_defaults_are_k5_and_30_rows():
    """Defaults k = 5 and min_stratum = 30: a far stratum of exactly 30 rows widens the hull."""
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(0, 1, 40), rng.normal(30, 1, 30)])[:, None]
    labels = np.array([0] * 40 + [1] * 30)
    lo, hi = ct.stratified_cap_bounds(x, labels)
    r_lo, r_hi = _ref_hull(x, labels, 5.0, 30)
    np.testing.assert_allclose(hi, r_hi, rtol=1e-12)
    np.testing.assert_allclose(lo, r_lo, rtol=1e-12)
    assert hi[0] > 30 and not np.allclose(r_hi, _ref_hull(x, labels, 5.0, 31)[1])
