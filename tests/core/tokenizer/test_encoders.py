"""Family encoders (SPEC 8): the registry against the config, each encoder's formula on tiny inputs,
autoencoder pre-training (it learns, streams chunks, is deterministic and leaves the caller's RNG
alone, freezes the encoder) and the state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock_core.config.tokenizer import ENCODERS
from spinlock_core.tokenizer.encoders import (
    ENCODER_CLASSES,
    IdentityEncoder,
    MLPDecoder,
    MLPEncoder,
    PooledIdentityEncoder,
    TemporalCNNEncoder,
    build_decoder,
    build_encoder,
    encode_chunks,
    encoder_from_state,
    encoder_state,
    parse_architecture,
    pretrain_autoencoder,
    reconstruction_mse,
)
from spinlock_core.tokenizer.encoders.temporal_cnn import ResidualBlock1d

F, T = 5, 7
#: small params per encoder, as the config's params models
SMALL = {
    "IdentityEncoder": {},
    "MLPEncoder": {"hidden_dims": [16], "output_dim": 6},
    "TemporalCNNEncoder": {"embedding_dim": 6, "hidden_channels": 8, "architecture": "resnet1d_2", "kernel_size": 3},
    "PooledIdentityEncoder": {"statistics": ["mean", "std", "slope"]},
}


def _input(name: str, b: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (b, T, F) if ENCODERS[name].reads == "sequence" else (b, F)
    return torch.randn(shape, generator=g)


def _build(name: str, seed: int = 0, **kw):
    return build_encoder(name, ENCODERS[name].model_validate(SMALL[name]), input_dim=F, num_states=T, seed=seed, **kw)


def _silent(done, total):
    pass


# ----------------------------------------------------------------------------- registry contract


def test_registry_keys_are_the_config_encoders():
    assert set(ENCODER_CLASSES) == set(ENCODERS)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_contract_every_encoder(name):
    enc = _build(name)
    assert enc.reads == ENCODERS[name].reads and enc.trained == ENCODERS[name].trained
    x = _input(name)
    y = enc(x)
    assert y.shape == (4, enc.output_dim) and y.dtype == torch.float32
    names = enc.output_names([f"c{j}" for j in range(F)])
    assert len(names) == enc.output_dim == len(set(names))
    back = encoder_from_state(encoder_state(enc))
    assert type(back) is type(enc) and not back.training
    torch.testing.assert_close(back(x), enc.eval()(x), rtol=0, atol=0)
    if enc.trained:
        z = build_decoder(enc, seed=1)(y)
        assert z.shape == x.shape
    else:
        with pytest.raises(ValueError, match="no weights to pre-train"):
            build_decoder(enc)


def test_build_encoder_accepts_dicts_and_none_and_validates():
    enc = build_encoder("MLPEncoder", {"hidden_dims": [8], "output_dim": 3}, input_dim=F)
    assert enc.init_kwargs["hidden_dims"] == [8] and enc.output_dim == 3
    assert build_encoder("IdentityEncoder", None, input_dim=F).output_dim == F
    with pytest.raises(ValueError, match="unknown encoder 'MLP'"):
        build_encoder("MLP", None, input_dim=F)
    with pytest.raises(ValueError, match="give num_states"):
        build_encoder("TemporalCNNEncoder", None, input_dim=F)
    with pytest.raises(ValueError, match="takes MLPParams params, got IdentityParams"):
        build_encoder("MLPEncoder", ENCODERS["IdentityEncoder"](), input_dim=F)
    with pytest.raises(ValueError, match="output_dim"):  # pydantic's ValidationError is a ValueError
        build_encoder("MLPEncoder", {"output_dim": 0}, input_dim=F)


def test_build_is_deterministic_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = _build("MLPEncoder", seed=3), _build("MLPEncoder", seed=3), _build("MLPEncoder", seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


# ----------------------------------------------------------------------------- formulas


def test_identity_returns_its_input_and_names():
    enc = IdentityEncoder(F)
    x = _input("IdentityEncoder")
    assert enc(x) is x
    assert enc.output_names(list("abcde")) == list("abcde")
    with pytest.raises(ValueError, match="expects 5 features per row"):
        enc(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reads 5 input columns, but 2 names"):
        enc.output_names(["a", "b"])


def test_pooled_statistics_match_numpy():
    x = np.random.default_rng(1).standard_normal((3, T, F)).astype(np.float32)
    stats = ["mean", "std", "min", "max", "final", "slope"]
    enc = PooledIdentityEncoder(F, T, stats, feature_names=list("abcde"))
    got = enc(torch.from_numpy(x)).numpy()
    slope = np.array([[np.polyfit(np.arange(T), x[b, :, f].astype(np.float64), 1)[0] for f in range(F)] for b in range(3)])
    ref = np.concatenate([x.mean(1), x.std(1, ddof=0), x.min(1), x.max(1), x[:, -1], slope], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    names = enc.output_names()
    assert names[:F] == ["a_mean", "b_mean", "c_mean", "d_mean", "e_mean"]
    assert names[F] == "a_std" and names[-1] == "e_slope" and len(names) == 6 * F
    assert enc.output_names(list("vwxyz"))[1] == "w_mean"
    assert list(enc.parameters()) == []


def test_pooled_refuses_bad_settings():
    with pytest.raises(ValueError, match="unknown statistics \\['median'\\]"):
        PooledIdentityEncoder(F, T, ["median"])
    with pytest.raises(ValueError, match="each statistic once"):
        PooledIdentityEncoder(F, T, ["mean", "mean"])
    with pytest.raises(ValueError, match="slope needs at least 2 states"):
        PooledIdentityEncoder(F, 1, ["slope"])


def test_mlp_names_and_mirror_decoder():
    enc = MLPEncoder(F, [16, 8], 4, name_prefix="summary_")
    assert enc.output_names() == ["summary_emb_000", "summary_emb_001", "summary_emb_002", "summary_emb_003"]
    dec = enc.make_decoder()
    assert isinstance(dec, MLPDecoder)
    widths = [(m.in_features, m.out_features) for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [(4, 8), (8, 16), (16, F)]
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLPEncoder(F, [8], 4, activation="swish")


def test_temporal_shape_blocks_and_head():
    enc = TemporalCNNEncoder(F, T, embedding_dim=6, blocks=2, hidden_channels=8, kernel_size=3)
    assert enc(_input("TemporalCNNEncoder", b=3)).shape == (3, 6)
    assert enc.head.in_features == 3 * 8  # mean, last state, slope per channel
    for n in (1, 4):
        e = build_encoder("TemporalCNNEncoder", {"architecture": f"resnet1d_{n}", "hidden_channels": 8},
                          input_dim=F, num_states=T)
        assert sum(isinstance(m, ResidualBlock1d) for m in e.modules()) == n
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    assert parse_architecture("resnet1d_3") == 3
    with pytest.raises(ValueError, match="'resnet1d_<blocks>'"):
        parse_architecture("resnet2d_3")


def test_temporal_row_does_not_depend_on_its_batch():
    enc = _build("TemporalCNNEncoder").train()  # GroupNorm: even in train mode
    x = _input("TemporalCNNEncoder", b=8)
    with torch.no_grad():
        full = enc(x)
        for i in (0, 5):
            torch.testing.assert_close(enc(x[i:i + 1])[0], full[i], rtol=0, atol=1e-6)
        assert not torch.allclose(enc(x.flip(1)), full, atol=1e-3)  # the order of states matters


@pytest.mark.parametrize("shape, match", [
    ((4, F), "expects sequences \\[B, T', F\\] with T' = 7 states and F = 5 features; got a 2-d input"),
    ((4, T + 1, F), "expects 7 states \\[B, 7, 5\\]; got 8"),
    ((4, T, F - 1), "expects 5 features \\[B, 7, 5\\]; got 4"),
])
def test_temporal_wrong_input_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        _build("TemporalCNNEncoder")(torch.zeros(shape))


# ----------------------------------------------------------------------------- pre-training


def _low_rank(n=1024, f=20, rank=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, f))
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def test_mlp_autoencoder_learns_low_rank_data():
    x = _low_rank()
    enc = build_encoder("MLPEncoder", {"hidden_dims": [32], "output_dim": 8}, input_dim=20, seed=0)
    dec = build_decoder(enc, seed=1)
    assert reconstruction_mse(enc, dec, [x]) > 0.5 * x.var()
    res = pretrain_autoencoder(enc, dec, lambda: [x[:512], x[512:]], steps=300, batch_size=64, learning_rate=1e-2,
                               seed=0, val_chunks=[x[:100]], progress=_silent)
    assert reconstruction_mse(enc, dec, [x]) < 0.1 * x.var()
    assert [h["step"] for h in res.history] == [100, 200, 300] and res.final_train_loss == res.history[-1]["loss"]
    assert res.val_loss == pytest.approx(reconstruction_mse(enc, dec, [x[:100]]), rel=1e-6)
    assert res.seconds > 0


def test_temporal_autoencoder_learns_sinusoids():
    rng = np.random.default_rng(0)
    n = 512
    freq, phase = rng.uniform(0.2, 1.0, (n, 1, 1)), rng.uniform(0, 2 * np.pi, (n, 1, 1))
    s = np.sin(freq * np.arange(16)[None, :, None] + phase + 0.7 * np.arange(4)[None, None, :]).astype(np.float32)
    enc = build_encoder("TemporalCNNEncoder", {"embedding_dim": 8, "hidden_channels": 16, "architecture": "resnet1d_1",
                                               "kernel_size": 3}, input_dim=4, num_states=16, seed=0)
    dec = build_decoder(enc, seed=1)
    before = reconstruction_mse(enc, dec, [s])
    pretrain_autoencoder(enc, dec, lambda: [s[:256], s[256:]], steps=300, batch_size=64, learning_rate=3e-3, seed=0,
                         progress=_silent)
    assert reconstruction_mse(enc, dec, [s]) < before / 20


def test_streaming_recalls_chunks_and_takes_exactly_steps():
    x = _low_rank(n=150)
    calls, batches, done = [], [], []

    def chunks():
        calls.append(1)
        return (x[i:i + 50] for i in range(0, 150, 50))

    enc = build_encoder("MLPEncoder", {"hidden_dims": [8], "output_dim": 4}, input_dim=20, seed=0)
    enc.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    pretrain_autoencoder(enc, build_decoder(enc, seed=1), chunks, steps=20, batch_size=16, learning_rate=1e-3, seed=0,
                         progress=lambda d, t: done.append((d, t)), log_every=7)
    # 50-row chunks -> 3 full batches each (the 2 leftover rows dropped), 9 steps per pass
    assert len(batches) == 20 and set(batches) == {16}
    assert len(calls) == 3
    assert done[-1] == (20, 20) and len(done) == 20


def test_small_chunk_is_one_batch_and_empty_pass_raises():
    x = _low_rank(n=10)
    batches = []
    enc = build_encoder("MLPEncoder", {"hidden_dims": [8], "output_dim": 4}, input_dim=20, seed=0)
    enc.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    res = pretrain_autoencoder(enc, build_decoder(enc), lambda: [x], steps=3, batch_size=64, learning_rate=1e-3,
                               seed=0, progress=_silent)
    assert batches == [10, 10, 10] and [h["step"] for h in res.history] == [3]
    enc = build_encoder("MLPEncoder", {"hidden_dims": [8], "output_dim": 4}, input_dim=20)
    with pytest.raises(ValueError, match="gave no rows"):
        pretrain_autoencoder(enc, build_decoder(enc), lambda: [x[:0]], steps=3, batch_size=4, learning_rate=1e-3,
                             seed=0, progress=_silent)


def _pretrained(seed: int, x: np.ndarray):
    enc = build_encoder("MLPEncoder", {"hidden_dims": [16], "output_dim": 4, "dropout": 0.2}, input_dim=20, seed=0)
    pretrain_autoencoder(enc, build_decoder(enc, seed=1), lambda: [x], steps=30, batch_size=32, learning_rate=1e-2,
                         seed=seed, progress=_silent)
    return enc


def test_pretraining_is_deterministic_and_keeps_the_callers_rng():
    x = _low_rank(n=200)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = _pretrained(5, x), _pretrained(5, x), _pretrained(6, x)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_pretrained_encoder_is_frozen():
    enc = _pretrained(0, _low_rank(n=100))
    assert not enc.training and not any(m.training for m in enc.modules())
    assert all(not p.requires_grad for p in enc.parameters())


def test_pretraining_refuses_bad_requests():
    enc = IdentityEncoder(F)
    with pytest.raises(ValueError, match="IdentityEncoder has no weights to pre-train"):
        pretrain_autoencoder(enc, enc, lambda: [], steps=1, batch_size=1, learning_rate=1e-3, seed=0)
    mlp = MLPEncoder(F, [4], 2)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        pretrain_autoencoder(mlp, mlp.make_decoder(), lambda: [], steps=0, batch_size=1, learning_rate=1e-3, seed=0)
    with pytest.raises(ValueError, match="zero-argument callable"):
        pretrain_autoencoder(mlp, mlp.make_decoder(), [], steps=1, batch_size=1, learning_rate=1e-3, seed=0)
    bad = np.full((4, F), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="20 non-finite values"):
        pretrain_autoencoder(mlp, mlp.make_decoder(), lambda: [bad], steps=1, batch_size=2, learning_rate=1e-3,
                             seed=0, progress=_silent)


# ----------------------------------------------------------------------------- encoding and state


def test_encode_chunks_concatenates_in_order():
    enc = _build("TemporalCNNEncoder")
    x = _input("TemporalCNNEncoder", b=10).numpy()
    got = encode_chunks(enc, lambda: [x[:3], x[3:]], batch_size=2)
    assert got.dtype == np.float32 and got.shape == (10, 6)
    with torch.no_grad():
        np.testing.assert_allclose(got, enc(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-6)
    assert encode_chunks(enc, []).shape == (0, 6)


def test_encoder_state_round_trip_and_refusals():
    enc = _pretrained(0, _low_rank(n=100))
    state = encoder_state(enc)
    assert state["format"] == "spinlock.family_encoder" and state["version"] == 1 and state["class"] == "MLPEncoder"
    back = encoder_from_state(state)
    x = torch.from_numpy(_low_rank(n=8))
    assert torch.equal(back(x), enc(x))
    assert all(not p.requires_grad for p in back.parameters())
    with pytest.raises(ValueError, match="expected format 'spinlock.family_encoder', got 'other'"):
        encoder_from_state({**state, "format": "other"})
    with pytest.raises(ValueError, match="version 2 is not supported"):
        encoder_from_state({**state, "version": 2})
    with pytest.raises(ValueError, match="unknown class 'GRUEncoder'"):
        encoder_from_state({**state, "class": "GRUEncoder"})
    with pytest.raises(ValueError, match="does not fit MLPEncoder"):
        encoder_from_state({**state, "kwargs": {**state["kwargs"], "output_dim": 5}})
