"""Pins of the tokenizer's training plumbing (SPEC 8-9) on tiny synthetic inputs, without a dataset:
what one family's fit hands to cleaning, encoder and pre-training (``pipeline._fit_family``), the
missing-family message, the ``feature_matrix`` folder (``save_prepared`` / ``load_prepared``), what
``prepare_tokenizer_input`` and ``train_on_prepared`` record, the Dagster code version, and the
torch.compile probe of training (``training._first_compiled_step``, with a stand-in for the compiled
callable, so no compiler runs).

Collaborators that cost seconds (cleaning, encoders, their pre-training, the VQ-VAE training) are
replaced by recorders; every expected value below is written out by hand from the config given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spinlock_core import __version__
from spinlock_core.config.tokenizer import TokenizerConfig, TrainingConfig, VQModelConfig
from spinlock_core.seeding import seed_int
from spinlock_core.storage.layout import PATHS
from spinlock_core.tokenizer import encoders, pipeline, train, training
from spinlock_core.tokenizer import checkpoint as ck
from spinlock_core.tokenizer.categories import Categories
from spinlock_core.tokenizer.cleaning import fit_cleaning
from spinlock_core.tokenizer.data import FeatureFile, TokenizerDataError
from spinlock_core.tokenizer.model import CategoricalVQVAE
from spinlock_core.tokenizer.pipeline import FamilyStage, FeaturePipeline, PreparedFeatures

# ------------------------------------------------------------------------------------------ config

#: every cleaning keyword away from its default, so that a keyword passed wrong or not at all shows
CLEANING = {"signed_log": {"rule": "quantile_ratio", "threshold": 3.5}, "mad_cap_k": 4.5, "variance_floor": 2e-6,
            "min_reliability": 0.3, "duplicate_threshold": 0.97, "min_stratum_size": 4,
            "linear_combination_tol": 3e-5, "validation_fraction": 0.25, "split_seed": 5}
FIT_KWARGS = dict(heavy_tail_rule="quantile_ratio", heavy_tail_threshold=3.5, mad_k=4.5, variance_floor=2e-6,
                  min_reliability=0.3, duplicate_threshold=0.97, min_stratum=4, linear_tol=3e-5)


def _cfg(model: dict | None = None, **training_overrides) -> TokenizerConfig:
    tr = {"seed": 11, "batch_size": 16, "max_steps": 10, "val_every_steps": 5, "dead_code_reset_interval": 5,
          "device": "cpu", "orthogonality_target": 0.2}
    tr.update(training_overrides)
    return TokenizerConfig.model_validate({
        "families": {
            "architecture": {"encoder": "IdentityEncoder"},
            "summary": {"encoder": "MLPEncoder", "blocks": ["cv", "std", "mean"],
                        "encoder_params": {"hidden_dims": [4], "output_dim": 2},
                        "pretrain": {"steps": 7, "learning_rate": 0.002}},
            "temporal": {"encoder": "TemporalCNNEncoder", "states": {"start": 2, "stop": 9, "stride": 3},
                         "encoder_params": {"embedding_dim": 3, "architecture": "resnet1d_1", "hidden_channels": 4},
                         "pretrain": {"steps": 5, "batch_size": 4, "learning_rate": 0.01}},
        },
        "cleaning": CLEANING,
        "model": {"num_categories": 3, "min_category_size": 2, "codebook_scale": 1, "threshold_ema_dead_code": 0.25,
                  "group_embedding_dim": 4, "group_hidden_dim": 8, "decoder_hidden_dims": [8], "kmeans_init": False,
                  **(model or {})},
        "training": tr,
    })


# ------------------------------------------------------------------------ _fit_family recorders

N = 6
META = {"diverged": np.array([False, True, False, False, False, False]),
        "policies": np.array(["residual", "convex", "residual", "convex", "residual", "convex"])}
TRAIN_MASK = np.array([True, True, True, True, False, False])
ROWS = np.array([0, 2, 3])
EXP_CFG = object()  # only passed through


class _Encoder:
    def __init__(self, prefix):
        self.prefix = prefix

    def output_names(self, kept):
        return [f"{self.prefix}{n}" for n in kept]


class _Recorder:
    """Stands in for cleaning, the encoder registry and pre-training; records every call."""

    def __init__(self, monkeypatch, kept, *, val_loss=0.25, dropped=()):
        self.calls: dict[str, list] = {}
        self.kept, self.val_loss, self.dropped = list(kept), val_loss, list(dropped)
        self.doc_summary = np.arange(360) % 7 == 0
        self.doc_other = np.array([True, False, True, False])
        mp = monkeypatch
        mp.setattr(pipeline, "documented_nan", self.documented_nan)
        mp.setattr(pipeline, "fit_cleaning", self.fit_cleaning)
        mp.setattr(pipeline, "apply_cleaning", self.apply_cleaning)
        mp.setattr(pipeline, "_fit_temporal_cleaning", self.fit_temporal)
        mp.setattr(pipeline, "_clean_sequence", self.clean_sequence)
        mp.setattr(encoders, "build_encoder", self.build_encoder)
        mp.setattr(encoders, "build_decoder", self.build_decoder)
        mp.setattr(encoders, "pretrain_autoencoder", self.pretrain)

    def _log(self, name, *args, **kwargs):
        self.calls.setdefault(name, []).append((args, kwargs))

    def spec(self, names):
        return SimpleNamespace(names=list(names), kept_names=list(self.kept),
                               dropped=[SimpleNamespace(name=d) for d in self.dropped])

    def documented_nan(self, path, exp_cfg):
        self._log("documented_nan", path, exp_cfg)
        return self.doc_summary if path == PATHS.SUMMARY_AGG else self.doc_other

    def fit_cleaning(self, raw, names, **kw):
        self._log("fit_cleaning", raw, names, **kw)
        self.spec_out = self.spec(names)
        return self.spec_out

    def apply_cleaning(self, spec, raw):
        self._log("apply_cleaning", spec, raw)
        return raw[:, :len(self.kept)] * 10.0 + 0.5  # float64 in, the caller makes float32

    def fit_temporal(self, *args):
        self._log("fit_temporal", *args)
        self.spec_out = self.spec([f"t{j}" for j in range(4)])
        return self.spec_out

    def clean_sequence(self, spec, x):
        self._log("clean_sequence", spec, x)
        return x[:, :, :len(self.kept)] * 2.0

    def build_encoder(self, name, params, **kw):
        self._log("build_encoder", name, params, **kw)
        self.encoder = _Encoder(kw["name_prefix"])
        return self.encoder

    def build_decoder(self, encoder, **kw):
        self._log("build_decoder", encoder, **kw)
        self.decoder = object()
        return self.decoder

    def pretrain(self, encoder, decoder, chunks, **kw):
        self._log("pretrain", encoder, decoder, chunks, **kw)
        self.train_seen = list(chunks())
        self.val_seen = None if kw.get("val_chunks") is None else list(kw["val_chunks"]())
        if kw.get("progress") is not None:
            kw["progress"](3, 7)
        return SimpleNamespace(final_train_loss=0.5, val_loss=self.val_loss, seconds=1.5, history=[{"step": 7}])


class _Flat:
    """A dataset with flat families: records what ``matrix`` and ``per_realization`` are asked."""

    path = Path("fake.h5")

    def __init__(self):
        self.asked = []
        self.raw = np.arange(N * 3, dtype=np.float64).reshape(N, 3)
        self.per = np.ones((N, 2, 3))

    def matrix(self, family, *, blocks=("mean",), expected=None):
        self.asked.append((family, blocks))
        return self.raw, [f"{family}_{j}" for j in range(3)]

    def per_realization(self):
        return self.per, ["r0", "r1", "r2"]


class _Temporal:
    """A TEMPORAL family ``[N, T=11, F=4]`` read the way :class:`FeatureFile` reads it."""

    path = Path("fake.h5")

    def __init__(self):
        self.data = np.arange(N * 11 * 4, dtype=np.float32).reshape(N, 11, 4)
        self.reads = []

    def temporal_shape(self):
        return self.data.shape

    def temporal_chunks(self, states=slice(1, None), chunk=256, rows=None):
        idx = np.arange(N) if rows is None else np.asarray(rows)
        self.reads.append((states, chunk, None if rows is None else idx.tolist()))
        for i in range(0, idx.size, chunk):
            part = idx[i:i + chunk]
            yield part, self.data[part][:, states]


def _fit(source, name, cfg, rows=ROWS, val_rows=np.array([4]), progress=None):
    return pipeline._fit_family(source, name, cfg.families[name], cfg, EXP_CFG, META, TRAIN_MASK, rows, val_rows,
                                "cpu", progress)


def test_fit_family_summary_wires_cleaning_encoder_and_pretraining(monkeypatch, caplog):
    cfg = _cfg()
    rec = _Recorder(monkeypatch, kept=["summary_0", "summary_2"])
    src = _Flat()
    progress_calls = []
    caplog.set_level(logging.INFO, logger=pipeline.log.name)
    stage = _fit(src, "summary", cfg, progress=lambda *a: progress_calls.append(a))

    assert src.asked == [("summary", ("cv", "std", "mean"))]
    # the documented-NaN mask of the aggregated [mean | std | cv] block, cut to the blocks read, in order
    assert rec.calls["documented_nan"] == [((PATHS.SUMMARY_AGG, EXP_CFG), {})] * 3
    (raw, names), kw = rec.calls["fit_cleaning"][0]
    assert raw is src.raw and names == ["summary_0", "summary_1", "summary_2"]
    expected_doc = np.concatenate([rec.doc_summary[240:360], rec.doc_summary[120:240], rec.doc_summary[0:120]])
    np.testing.assert_array_equal(kw.pop("documented_nan"), expected_doc)
    assert kw.pop("train_mask") is TRAIN_MASK
    assert kw.pop("diverged") is META["diverged"]
    assert kw.pop("strata") is META["policies"]
    assert kw.pop("per_realization") is src.per
    assert kw.pop("per_realization_names") == ["r0", "r1", "r2"]
    assert kw == dict(family="summary", **FIT_KWARGS)
    assert rec.calls["apply_cleaning"] == [((rec.spec_out, src.raw), {})]

    # the encoder: seeded from (seed, "tokenizer", 1, family index 1), named after the family
    enc_seed = seed_int(11, "tokenizer", 1, 1)
    (name, params), kw = rec.calls["build_encoder"][0]
    assert name == "MLPEncoder" and params is cfg.families["summary"].encoder_params
    assert kw == dict(input_dim=2, num_states=None, feature_names=["summary_0", "summary_2"], name_prefix="summary_",
                      seed=enc_seed)
    assert rec.calls["build_decoder"] == [((rec.encoder,), {"seed": enc_seed + 1})]

    (enc, dec, _), kw = rec.calls["pretrain"][0]
    assert enc is rec.encoder and dec is rec.decoder
    kw.pop("val_chunks"), kw.pop("progress")
    # pretrain.batch_size unset -> training.batch_size
    assert kw == dict(steps=7, batch_size=16, learning_rate=0.002, seed=enc_seed, device="cpu")
    clean = (src.raw[:, :2] * 10.0 + 0.5).astype(np.float32)
    assert len(rec.train_seen) == 1 and rec.train_seen[0].dtype == np.float32
    np.testing.assert_array_equal(rec.train_seen[0], clean[[0, 2, 3]])
    assert len(rec.val_seen) == 1
    np.testing.assert_array_equal(rec.val_seen[0], clean[[4]])
    assert progress_calls == [(3, 7, {"stage": "pretrain summary"})]

    assert stage.name == "summary" and stage.encoder_name == "MLPEncoder"
    assert stage.cleaning is rec.spec_out and stage.encoder is rec.encoder
    assert stage.output_names == ["summary_summary_0", "summary_summary_2"]
    assert stage.blocks == ("cv", "std", "mean") and stage.states is None and not stage.is_sequence
    assert stage.pretrain == {"steps": 7, "learning_rate": 0.002, "final_train_loss": 0.5, "val_loss": 0.25,
                              "seconds": 1.5, "history": [{"step": 7}]}
    assert caplog.messages == ["summary: 2 of 3 columns kept",
                               "summary: pre-training MLPEncoder as an autoencoder for 7 steps",
                               "summary: encoder pre-trained (train MSE 0.5000, validation MSE 0.2500) and frozen"]


def test_fit_family_without_validation_rows_pretrains_without_validation(monkeypatch, caplog):
    cfg = _cfg()
    rec = _Recorder(monkeypatch, kept=["summary_1"], val_loss=None)
    caplog.set_level(logging.INFO, logger=pipeline.log.name)
    stage = _fit(_Flat(), "summary", cfg, val_rows=np.array([], dtype=np.int64))
    kw = rec.calls["pretrain"][0][1]
    assert kw["val_chunks"] is None and kw["progress"] is None
    assert stage.pretrain["val_loss"] is None
    assert caplog.messages[-1] == "summary: encoder pre-trained (train MSE 0.5000, validation MSE n/a) and frozen"


def test_fit_family_flat_untrained_family(monkeypatch, caplog):
    cfg = _cfg()
    rec = _Recorder(monkeypatch, kept=["architecture_0", "architecture_1", "architecture_2"])
    src = _Flat()
    caplog.set_level(logging.INFO, logger=pipeline.log.name)
    stage = _fit(src, "architecture", cfg)
    # no blocks: the matrix is read with the default block; the family's own documented-NaN mask
    assert src.asked == [("architecture", ("mean",))]
    assert rec.calls["documented_nan"] == [((PATHS.ARCHITECTURE, EXP_CFG), {})]
    kw = rec.calls["fit_cleaning"][0][1]
    assert kw["documented_nan"] is rec.doc_other
    assert "per_realization" not in kw and "per_realization_names" not in kw
    assert kw["family"] == "architecture" and kw["strata"] is META["policies"]
    kw = rec.calls["build_encoder"][0][1]
    assert kw["seed"] == seed_int(11, "tokenizer", 1, 0) and kw["input_dim"] == 3 and kw["num_states"] is None
    assert "pretrain" not in rec.calls and "build_decoder" not in rec.calls
    assert stage.pretrain is None and stage.blocks == () and stage.states is None
    assert stage.output_names == ["architecture_architecture_0", "architecture_architecture_1",
                                  "architecture_architecture_2"]
    assert caplog.messages == ["architecture: 3 of 3 columns kept"]


def test_fit_family_temporal_reads_states_in_chunks(monkeypatch, caplog):
    cfg = _cfg()
    rec = _Recorder(monkeypatch, kept=["t0", "t3"])
    src = _Temporal()
    progress_calls = []
    caplog.set_level(logging.INFO, logger=pipeline.log.name)
    val_rows = np.array([4, 5])
    stage = _fit(src, "temporal", cfg, val_rows=val_rows, progress=lambda *a: progress_calls.append(a))
    args, _ = rec.calls["fit_temporal"][0]
    assert args[0] is src and args[1] is cfg.families["temporal"] and args[2] is ROWS
    assert args[3] is META["policies"] and args[4] is EXP_CFG and args[5] is cfg and args[6] == 11
    assert "fit_cleaning" not in rec.calls
    # states 2:9:3 of T = 11 -> states 2, 5, 8
    kw = rec.calls["build_encoder"][0][1]
    assert kw == dict(input_dim=2, num_states=3, feature_names=["t0", "t3"], name_prefix="temporal_",
                      seed=seed_int(11, "tokenizer", 1, 2))
    kw = rec.calls["pretrain"][0][1]
    assert kw["steps"] == 5 and kw["batch_size"] == 4 and kw["learning_rate"] == 0.01
    assert src.reads == [(slice(2, 9, 3), pipeline.TEMPORAL_CHUNK, [0, 2, 3]),
                         (slice(2, 9, 3), pipeline.TEMPORAL_CHUNK, [4, 5])]
    sel = src.data[:, 2:9:3, :2] * 2.0
    assert len(rec.train_seen) == 1 and len(rec.val_seen) == 1
    np.testing.assert_array_equal(rec.train_seen[0], sel[[0, 2, 3]])
    np.testing.assert_array_equal(rec.val_seen[0], sel[[4, 5]])
    assert all(c[0][0] is rec.spec_out for c in rec.calls["clean_sequence"])
    assert progress_calls == [(3, 7, {"stage": "pretrain temporal"})]
    assert stage.states == (2, 9, 3) and stage.state_slice() == slice(2, 9, 3) and stage.blocks == ()
    assert stage.cleaning is rec.spec_out and stage.output_names == ["temporal_t0", "temporal_t3"]
    assert caplog.messages[0] == "temporal: 2 of 4 columns kept"


def test_fit_family_that_cleaning_empties_names_the_first_ten_dropped(monkeypatch):
    cfg = _cfg()
    _Recorder(monkeypatch, kept=[], dropped=[f"d{j}" for j in range(12)])
    with pytest.raises(TokenizerDataError) as e:
        _fit(_Flat(), "architecture", cfg)
    first10 = [f"d{j}" for j in range(10)]
    assert str(e.value) == (f"fake.h5: cleaning dropped every column of the architecture family; "
                            f"see the dropped list: {first10}")


# ------------------------------------------------------------------------------ raw_outputs

def _stage(name, width):
    return FamilyStage(name=name, encoder_name="IdentityEncoder", cleaning=None, encoder=None,
                       output_names=[f"{name}_{j}" for j in range(width)])


def test_raw_outputs_concatenates_families_in_order_and_names_missing_ones(monkeypatch):
    pipe = FeaturePipeline(families=[_stage("summary", 2), _stage("temporal", 1), _stage("initial", 3)],
                           names=[], column_family=[], mean=np.zeros(0), std=np.ones(0))
    seen = []

    def encode_family(self, source, stage, *, device="cpu"):
        seen.append((source, stage.name, device))
        k = ["summary", "temporal", "initial"].index(stage.name)
        return np.full((4, len(stage.output_names)), float(k + 1), dtype=np.float32)

    monkeypatch.setattr(FeaturePipeline, "encode_family", encode_family)
    full = SimpleNamespace(path=Path("all.h5"), families=["initial", "summary", "temporal"])
    out = pipe.raw_outputs(full, device="meta")
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[0], [1, 1, 2, 3, 3, 3])
    assert seen == [(full, "summary", "meta"), (full, "temporal", "meta"), (full, "initial", "meta")]
    seen.clear()
    pipe.raw_outputs(full)  # encoded on the CPU by default
    assert [d for _, _, d in seen] == ["cpu"] * 3

    two = SimpleNamespace(path=Path("part.h5"), families=["summary", "architecture"])
    with pytest.raises(TokenizerDataError) as e:
        pipe.raw_outputs(two)
    assert str(e.value) == ("part.h5: the tokenizer needs the temporal, initial families, which this dataset does "
                            "not hold (it holds: summary, architecture)")
    one = SimpleNamespace(path=Path("one.h5"), families=["summary", "temporal"])
    with pytest.raises(TokenizerDataError) as e:
        pipe.raw_outputs(one)
    assert str(e.value) == ("one.h5: the tokenizer needs the initial family, which this dataset does not hold "
                            "(it holds: summary, temporal)")
    none = SimpleNamespace(path=Path("none.h5"), families=[])
    with pytest.raises(TokenizerDataError, match=re.escape(
            "none.h5: the tokenizer needs the summary, temporal, initial families, which this dataset does not "
            "hold (it holds: no feature family)")):
        pipe.raw_outputs(none)


# -------------------------------------------------------------------------- code version

def test_tokenizer_code_version_is_a_16_hex_digest_of_the_sorted_config_and_version():
    cfg = _cfg()
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True) + __version__
    assert train.tokenizer_code_version(cfg) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", train.tokenizer_code_version(cfg))
    assert train.tokenizer_code_version(_cfg(seed=12)) != train.tokenizer_code_version(cfg)


# --------------------------------------------------------------- feature_matrix folder round trip

def _prepared(cfg) -> train.PreparedTokenizerInput:
    """A real one-family pipeline (identity encoder) fitted on a 12 x 3 matrix, with 2 categories."""
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(12, 3))
    names = ["a", "b", "c"]
    spec = fit_cleaning(raw, names, family="architecture", min_reliability=0.0)
    enc = encoders.build_encoder("IdentityEncoder", {}, input_dim=3, feature_names=names, name_prefix="architecture_")
    stage = FamilyStage(name="architecture", encoder_name="IdentityEncoder", cleaning=spec, encoder=enc,
                        output_names=list(enc.output_names(names)))
    out_names = list(stage.output_names)
    pipe = FeaturePipeline(families=[stage], names=out_names, column_family=["architecture"] * 3,
                           mean=np.array([0.5, -1.0, 2.0], np.float32), std=np.array([1.0, 2.0, 4.0], np.float32),
                           dropped=[("architecture", "architecture_d", "constant")], keep=np.array([0, 1, 2]),
                           reliabilities=np.array([1.0, 0.75, 0.5]))
    cats = Categories(names=tuple(out_names), assignment=np.array([0, 0, 1]), requested_num_categories=2,
                      num_clusters_cut=2, min_size=1, silhouette_k=(2,), silhouette=(0.5,), silhouette_final=0.5,
                      orthogonality=0.125)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    val_mask = np.zeros(12, bool)
    val_mask[[3, 7]] = True
    meta = {"ic_types": np.array(["grf", "localized"] * 6), "diverged": np.arange(12) == 5,
            "operator_index": np.arange(100, 112)}
    prep = PreparedFeatures(pipeline=pipe, x=x, val_mask=val_mask, train_rows=np.array([0, 1, 2, 4, 6, 8, 9, 10, 11]),
                            val_rows=np.array([3, 7]), metadata=meta)
    return train.PreparedTokenizerInput(prep, cats, {"path": "d.h5", "n": 12}, 2.5)


def test_feature_matrix_folder_round_trip(tmp_path):
    cfg = _cfg()
    inp = _prepared(cfg)
    folder = train.save_prepared(tmp_path / "fm", inp, cfg)
    assert folder == (tmp_path / "fm").resolve()
    assert sorted(p.name for p in folder.iterdir()) == ["categories.json", "cleaning", "encoders", "matrix.npz",
                                                        "tokenizer.json"]
    text = (folder / "tokenizer.json").read_text()
    assert text.startswith('{\n "format": "spinlock.feature_matrix",\n "version": 1,\n')  # indent 1, in order
    m = json.loads(text)
    assert {k: m[k] for k in ("format", "version", "code_version", "dataset", "seconds")} == {
        "format": "spinlock.feature_matrix", "version": 1, "code_version": __version__,
        "dataset": {"path": "d.h5", "n": 12}, "seconds": 2.5}
    assert m["config"] == cfg.model_dump(mode="json")
    assert m["names"] == ["a", "b", "c"] and m["keep"] == [0, 1, 2]
    assert m["mean"] == [0.5, -1.0, 2.0] and m["std"] == [1.0, 2.0, 4.0] and m["reliabilities"] == [1.0, 0.75, 0.5]
    assert m["dropped"] == [["architecture", "architecture_d", "constant"]]
    with np.load(folder / "matrix.npz") as z:
        assert sorted(z.files) == ["meta_diverged", "meta_ic_types", "meta_operator_index", "train_rows", "val_mask",
                                   "val_rows", "x"]
        np.testing.assert_array_equal(z["x"], inp.prepared.x)

    again, cfg2 = train.load_prepared(folder)
    assert cfg2 == cfg
    p, q = again.prepared, inp.prepared
    for k in ("x", "val_mask", "train_rows", "val_rows"):
        np.testing.assert_array_equal(getattr(p, k), getattr(q, k))
    assert sorted(p.metadata) == ["diverged", "ic_types", "operator_index"]
    for k in q.metadata:
        np.testing.assert_array_equal(p.metadata[k], q.metadata[k])
    assert again.dataset == {"path": "d.h5", "n": 12} and again.seconds == 2.5 and type(again.seconds) is float
    c = again.categories
    assert c.names == ("a", "b", "c") and c.assignment.tolist() == [0, 0, 1] and c.orthogonality == 0.125
    assert again.pipeline.names == q.pipeline.names and again.pipeline.families[0].name == "architecture"
    np.testing.assert_array_equal(again.pipeline.std, [1.0, 2.0, 4.0])


def test_save_prepared_refuses_nan_in_the_manifest(tmp_path):
    cfg = _cfg()
    inp = _prepared(cfg)
    inp.seconds = float("nan")
    with pytest.raises(ValueError, match="not JSON compliant"):
        train.save_prepared(tmp_path / "fm", inp, cfg)
    assert not (tmp_path / "fm").exists()


def test_load_prepared_names_what_is_wrong(tmp_path):
    with pytest.raises(ck.CheckpointError) as e:
        train.load_prepared(tmp_path)
    assert str(e.value) == f"{tmp_path}: not a feature_matrix folder (missing tokenizer.json)"
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format": "spinlock.tokenizer"}))
    with pytest.raises(ck.CheckpointError) as e:
        train.load_prepared(tmp_path)
    assert str(e.value) == (f"{tmp_path / 'tokenizer.json'}: format 'spinlock.tokenizer', "
                            "expected 'spinlock.feature_matrix'")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ck.CheckpointError, match=re.escape("format None, expected 'spinlock.feature_matrix'")):
        train.load_prepared(tmp_path)

    cfg = _cfg()
    folder = train.save_prepared(tmp_path / "fm", _prepared(cfg), cfg)
    (folder / "matrix.npz").unlink()
    with pytest.raises(ck.CheckpointError) as e:
        train.load_prepared(folder)
    assert str(e.value) == f"{folder}: missing matrix.npz"


# ---------------------------------------------------------------------- prepare_tokenizer_input

class _File(FeatureFile):
    """A FeatureFile that opens nothing: records the path it is made from."""

    def __init__(self, path="made.h5"):
        self.path, self.n, self.families = Path(path), 7, ["architecture"]

    def identity(self):
        return {"path": str(self.path), "n": self.n}


def test_prepare_tokenizer_input_fits_then_discovers_on_training_rows(monkeypatch, caplog):
    cfg = _cfg()
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    prep = SimpleNamespace(x=x, train_rows=np.array([0, 3, 5]), pipeline=SimpleNamespace(names=["u", "v"]))
    cats = SimpleNamespace(num_categories=2, sizes=(2, 1), orthogonality=0.12345)
    calls = {}

    def fit(source, c, **kw):
        calls["fit"] = (source, c, kw)
        return prep

    def discover(*args):
        calls["discover"] = args
        return cats

    monkeypatch.setattr(train, "FeatureFile", _File)
    monkeypatch.setattr(train, "fit_feature_pipeline", fit)
    monkeypatch.setattr(train, "discover_categories", discover)
    caplog.set_level(logging.INFO, logger=train.log.name)

    def progress(*a):
        return None

    t0 = time.perf_counter()
    out = train.prepare_tokenizer_input("given.h5", cfg, progress=progress)
    elapsed = time.perf_counter() - t0
    source, c, kw = calls["fit"]
    assert isinstance(source, _File) and source.path == Path("given.h5") and c is cfg
    assert kw == {"device": "cpu", "progress": progress}
    xs, names, k, min_size = calls["discover"]
    np.testing.assert_array_equal(xs, x[[0, 3, 5]])
    assert names == ["u", "v"] and k == 3 and min_size == 2
    assert out.prepared is prep and out.categories is cats and out.pipeline is prep.pipeline
    assert out.dataset == {"path": "given.h5", "n": 7}
    assert 0.0 <= out.seconds <= elapsed
    assert caplog.messages == ["preparing the tokenizer input from given.h5 (7 operators) on cpu",
                               "2 categories of [2, 1] columns; orthogonality 0.123 (target 0.20)"]
    # a FeatureFile is used as given
    f = _File("own.h5")
    assert train.prepare_tokenizer_input(f, cfg).dataset == {"path": "own.h5", "n": 7}
    assert calls["fit"][0] is f


# ---------------------------------------------------------------------------- train_on_prepared

class _Tok:
    made: list = []

    def __init__(self, *args):
        self.args = args
        _Tok.made.append(self)

    def save(self, out, **kw):
        self.saved = (out, kw)


def _inp_for_training():
    fams = [SimpleNamespace(name="summary", pretrain={"steps": 3}), SimpleNamespace(name="architecture", pretrain=None)]
    names = ["s0", "a0", "s1", "a1", "a2"]
    pipe = SimpleNamespace(families=fams, names=names, column_family=["summary", "architecture", "summary",
                                                                      "architecture", "architecture"],
                           reliabilities=np.array([1.0, 0.9, 0.8, 1.0, 1.0]))
    x = np.arange(40, dtype=np.float32).reshape(8, 5)
    prep = SimpleNamespace(x=x, train_rows=np.array([0, 1, 2, 4, 5, 7]), val_rows=np.array([3, 6]),
                           metadata={"ic_types": np.array([f"ic{j}" for j in range(8)])})
    # categories of 5 and 30 columns (the names listed are those in this small matrix)
    cats = SimpleNamespace(sizes=(5, 30), assignment=np.array([0, 1, 0, 1, 1]), num_categories=2,
                           category_names=[("s0", "s1"), ("a0", "a1", "a2")], orthogonality=0.0625)
    return SimpleNamespace(prepared=prep, categories=cats, pipeline=pipe, dataset={"path": "d.h5"}, seconds=2.0)


def _run_train_on_prepared(monkeypatch, cfg, tmp_path, **kw):
    calls = {}
    result = SimpleNamespace(model=object(), steps_run=10, best_step=8, stopped_early=True, seconds=0.75,
                             device="cpu", history=[{"step": 10}])

    def fake_train(*args, **kwargs):
        calls["train"] = (args, kwargs)
        return result

    metrics = SimpleNamespace(quality=0.912345, noise_ceiling=0.95, utilization=0.5, utilization_train_mean=0.625,
                              per_level_quality=[0.123456, 0.5], utilization_val=[0.5, 0.0, 0.25, 0.0, 1.0, 1.0],
                              to_dict=lambda: {"quality": 0.912345})

    def fake_eval(*args, **kwargs):
        calls["eval"] = (args, kwargs)
        return metrics, {"summary": 0.9}

    _Tok.made = []
    monkeypatch.setattr(training, "train_vqvae", fake_train)
    monkeypatch.setattr(train, "evaluate_tokenizer", fake_eval)
    monkeypatch.setattr(train, "peak_rss_mb", lambda: 123.5)
    monkeypatch.setattr(train, "Tokenizer", _Tok)
    inp = _inp_for_training()
    t0 = time.perf_counter()
    tok, doc = train.train_on_prepared(inp, cfg, tmp_path / "tok", **kw)
    return inp, tok, doc, calls, result, time.perf_counter() - t0


def test_train_on_prepared_records_metrics_history_and_manifest(monkeypatch, tmp_path, caplog):
    cfg = _cfg(model={"threshold_ema_dead_code": 0.5}, batch_size=64, min_val_quality=0.7, min_val_utilization=0.3)
    caplog.set_level(logging.INFO, logger=train.log.name)
    progress = lambda *a: None  # noqa: E731
    inp, tok, doc, calls, result, elapsed = _run_train_on_prepared(monkeypatch, cfg, tmp_path, progress=progress,
                                                                   config_path="cfg.yaml")
    prep = inp.prepared
    args, kw = calls["train"]
    np.testing.assert_array_equal(args[0], prep.x[[0, 1, 2, 4, 5, 7]])
    np.testing.assert_array_equal(args[1], prep.x[[3, 6]])
    assert args[2] is inp.categories.assignment and args[3] is cfg.model and args[4] is cfg.training
    assert kw == {"device": torch.device("cpu"), "progress": progress}
    args, kw = calls["eval"]
    assert args[0] is result.model
    np.testing.assert_array_equal(args[1], prep.x[[0, 1, 2, 4, 5, 7]])
    np.testing.assert_array_equal(args[2], prep.x[[3, 6]])
    # SPEC 9 sizes with codebook_scale 1: 5 columns -> (16, 8, 6), 30 columns -> (32, 17, 8)
    sizes = [16, 8, 6, 32, 17, 8]
    assert kw.pop("codebook_sizes") == sizes
    np.testing.assert_array_equal(kw.pop("ic_types_val"), ["ic3", "ic6"])
    assert kw.pop("assignment") is inp.categories.assignment and kw.pop("reliabilities") is inp.pipeline.reliabilities
    assert kw == {"column_family": inp.pipeline.column_family}

    total = doc["training"].pop("total_seconds")
    assert 2.0 <= total <= 2.0 + elapsed
    assert doc == {
        "quality": 0.912345,
        "categories": [
            {"category": 0, "size": 2, "features": ["s0", "s1"], "families": ["summary"], "codebook_sizes": [16, 8, 6]},
            {"category": 1, "size": 3, "features": ["a0", "a1", "a2"], "families": ["architecture"],
             "codebook_sizes": [32, 17, 8]}],
        "category_orthogonality_train": 0.0625,
        "quality_per_family": {"summary": 0.9},
        "feature_columns": 5,
        "columns_per_family": {"summary": 2, "architecture": 3},
        "training": {"steps_run": 10, "best_step": 8, "stopped_early": True, "train_seconds": 0.75,
                     "pipeline_seconds": 2.0, "device": "cpu", "peak_rss_mb": 123.5},
        "thresholds": {"min_val_quality": 0.7, "min_val_utilization": 0.3},
        "dead_codebooks": [1, 3],
    }
    (t,) = _Tok.made
    assert tok is t
    pipe, cats, model, manifest = t.args
    assert pipe is inp.pipeline and cats is inp.categories and model is result.model
    out, kw = t.saved
    assert out == tmp_path / "tok" and kw["metrics"] is doc
    history = kw["history"]
    assert history.pop("total_seconds") == total
    assert history == {"vqvae": [{"step": 10}], "encoders": {"summary": {"steps": 3}}, "pipeline_seconds": 2.0,
                       "peak_rss_mb": 123.5}
    created = manifest.pop("created")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", created)
    assert manifest == {
        "format": "spinlock.tokenizer", "version": 1, "code_version": __version__, "config_path": "cfg.yaml",
        "config": cfg.model_dump(mode="json"), "dataset": {"path": "d.h5"}, "num_categories": 2, "num_levels": 3,
        "codebook_sizes": sizes,
        "split": {"validation_fraction": 0.25, "seed": 5, "n_train": 6, "n_val": 2},
    }
    # threshold 0.5 = 0.25 * 64 / 32 exactly: at the limit, no warning
    assert caplog.messages == ["validation quality 0.9123 (noise ceiling 0.9500), utilization val 0.500 / train "
                               "0.625, per level [0.1235, 0.5]"]


def test_train_on_prepared_warns_when_dead_code_threshold_exceeds_the_largest_codebook(monkeypatch, tmp_path, caplog):
    # above 0.25 * 64 / 32 for the 30-column category (the config allows up to 0.25 * 64 / 15)
    cfg = _cfg(model={"threshold_ema_dead_code": 0.51}, batch_size=64)
    caplog.set_level(logging.WARNING, logger=train.log.name)
    _run_train_on_prepared(monkeypatch, cfg, tmp_path)
    assert caplog.messages == ["threshold_ema_dead_code 0.51 exceeds 0.25 * batch / K = 0.5 for the largest "
                               "codebook: codes in use may be expired"]


# ------------------------------------------------------------------------ _first_compiled_step

def _tiny_model():
    model_cfg = VQModelConfig.model_validate({"codebook_scale": 1, "group_embedding_dim": 4, "group_hidden_dim": 8,
                                              "decoder_hidden_dims": [8], "kmeans_init": False,
                                              "threshold_ema_dead_code": 0.1})
    torch.manual_seed(0)
    model = CategoricalVQVAE.from_config(np.array([0, 0, 1, 1]), model_cfg)
    # a trainable parameter the loss never reaches: it must not make the probe fail
    model.register_parameter("spare", torch.nn.Parameter(torch.zeros(2)))
    model.train()
    return model, TrainingConfig(device="cpu", batch_size=8, max_steps=10, val_every_steps=5,
                                 dead_code_reset_interval=5), torch.randn(8, 4)


class _Log:
    def __init__(self):
        self.warnings = []

    def warning(self, msg):
        self.warnings.append(msg)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _disturbing(model, fail: bool):
    """A stand-in for the compiled module: changes weights and the global RNG, then runs or fails."""

    def compiled(xb):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        torch.rand(5)
        if fail:
            raise RuntimeError("boom " + "x" * 300)
        return model(xb)

    return compiled


def _probe(compiled, model, xb, cfg, log):  # the line that calls the probe (train_vqvae's place)
    return training._first_compiled_step(compiled, model, xb, cfg, log)


def _outer(*args):
    return _probe(*args)  # the caller of train_vqvae: where the warning should point


def test_first_compiled_step_keeps_a_working_compiled_module_and_restores_state():
    model, cfg, xb = _tiny_model()
    before, rng = _state(model), torch.get_rng_state()
    compiled, log = _disturbing(model, fail=False), _Log()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _outer(compiled, model, xb, cfg, log)
    assert out is compiled
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)] and log.warnings == []
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_first_compiled_step_falls_back_to_eager_with_a_warning():
    model, cfg, xb = _tiny_model()
    before, rng = _state(model), torch.get_rng_state()
    log = _Log()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _outer(_disturbing(model, fail=True), model, xb, cfg, log)
    assert out is model
    msg = "torch.compile failed (RuntimeError: boom " + "x" * 195 + "); training without compilation"
    assert log.warnings == [msg]
    (w,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert str(w.message) == msg and w.category is RuntimeWarning
    # the warning points past the probe's caller (train_vqvae), not at the library's own line; under a
    # wrapper of the probe (mutation testing adds two frames) it lands in the wrapper instead
    assert Path(w.filename).resolve() != Path(training.__file__).resolve()
    assert (Path(w.filename).resolve(), w.lineno) != (Path(__file__).resolve(), _probe.__code__.co_firstlineno + 1)
    if not hasattr(training._first_compiled_step, "__wrapped__"):
        assert (Path(w.filename).resolve(), w.lineno) == (Path(__file__).resolve(), _outer.__code__.co_firstlineno + 1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
