"""Pins of the tokenizer's feature pipeline and its surroundings (issue #11 sweep), on tiny synthetic
inputs without a dataset:

* ``pipeline.fit_feature_pipeline``: what it hands each family's fit, the final z-score (the
  ``std > sqrt(variance_floor)`` boundary, the dropped list and its message), the names, families
  and reliabilities of the kept columns, its log lines and its messages;
* ``pipeline._fit_temporal_cleaning``: the seeded (operator, state) rows the TEMPORAL cleaning is
  fitted on, their strata and the cleaning keywords; ``_cleaning_kwargs``, ``_clean_sequence``,
  ``_output_reliabilities`` and ``FeaturePipeline.transform``;
* ``pipeline_io``: every field written by ``pipeline_fields`` / ``write_pipeline`` read back by
  ``read_pipeline`` (the per-family ``pretrain`` record included) and its messages;
* ``data.ArrayFeatures``: block selection, chunks and every message; ``data.FeatureFile`` on small
  HDF5 files: metadata, names, the experiment config, the column checks' details, a shard's
  stage files and every message;
* ``api``: ``as_source``, the ``Tokenizer`` properties, what ``load`` builds, the default hash
  check and the model file's message;
* ``cleaning``: ``apply_cleaning`` by hand and the "not estimable" reasons.

Expensive collaborators (cleaning, encoders) are replaced by small stand-ins; every expected value
is written out by hand or computed here with numpy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spinlock_core.config.tokenizer import TokenizerConfig
from spinlock_core.seeding import numpy_generator
from spinlock_core.storage.layout import PATHS
from spinlock_core.tokenizer import encoders, pipeline
from spinlock_core.tokenizer.data import FeatureFile, TokenizerDataError
from spinlock_core.tokenizer.split import validation_mask

# ------------------------------------------------------------------------------------------ config

#: every cleaning keyword away from its default, so a keyword passed wrong or not at all shows
CLEANING = {"signed_log": {"rule": "quantile_ratio", "threshold": 3.5}, "mad_cap_k": 4.5, "variance_floor": 0.25,
            "min_reliability": 0.3, "duplicate_threshold": 0.97, "min_stratum_size": 4,
            "linear_combination_tol": 3e-5, "validation_fraction": 0.25, "split_seed": 5}
FIT_KWARGS = {"heavy_tail_rule": "quantile_ratio", "heavy_tail_threshold": 3.5, "mad_k": 4.5, "variance_floor": 0.25,
              "min_reliability": 0.3, "duplicate_threshold": 0.97, "min_stratum": 4, "linear_tol": 3e-5}


def _cfg(families=None) -> TokenizerConfig:
    fams = families or {"architecture": {"encoder": "IdentityEncoder"}, "initial": {"encoder": "IdentityEncoder"}}
    return TokenizerConfig.model_validate({
        "families": fams,
        "cleaning": CLEANING,
        "model": {"num_categories": 2, "min_category_size": 1, "codebook_scale": 1, "kmeans_init": False,
                  "threshold_ema_dead_code": 0.25},
        "training": {"seed": 11, "batch_size": 16, "max_steps": 10, "val_every_steps": 5,
                     "dead_code_reset_interval": 5, "device": "cpu"},
    })


def test_cleaning_kwargs_maps_every_cleaning_field():
    """``_cleaning_kwargs``: the config's cleaning section as the eight fit_cleaning keywords."""
    assert pipeline._cleaning_kwargs(_cfg()) == FIT_KWARGS


# --------------------------------------------------------------------- fit_feature_pipeline

N = 8
#: operator ids (not positions) decide the split
OP_INDEX = np.array([13, 2, 7, 21, 4, 9, 30, 15])
DIVERGED = np.array([False, False, True, False, False, False, False, False])


class _FakeFile(FeatureFile):
    """A FeatureFile (so no path is opened) with flat families ``architecture [N, 3]`` and
    ``initial [N, 2]``, recording what it is asked."""

    def __init__(self, families=("architecture", "initial"), temporal_t=None):
        self.path = Path("fake.h5")
        self.n = N
        self.families = list(families)
        self.temporal_t = temporal_t
        self.asked = []
        self.exp = SimpleNamespace(simulation=SimpleNamespace(num_timesteps=17))
        self.raw = {"architecture": np.arange(N * 3, dtype=np.float64).reshape(N, 3),
                    "initial": np.arange(N * 2, dtype=np.float64).reshape(N, 2) * 3.0}

    def experiment_config(self):
        return self.exp

    def temporal_shape(self):
        return (N, self.temporal_t, 63)

    def metadata(self):
        return {"diverged": DIVERGED.copy(), "policies": np.array(["a", "b"] * 4), "operator_index": OP_INDEX.copy(),
                "ic_types": np.array(["x"] * N)}

    def matrix(self, family, *, blocks=("mean",), expected=None):
        self.asked.append((family, blocks, expected))
        return self.raw[family], list(expected)


class _Enc:
    """An "encoder": a fixed function of its ``[n, F]`` input."""

    def __init__(self, fn):
        self.fn = fn


def _stage(name, outputs, fn, encoder_name="IdentityEncoder", reliabilities=None, kept=None):
    width = len(outputs)
    kept = kept if kept is not None else [True] * width
    rel = reliabilities if reliabilities is not None else [None] * len(kept)
    spec = SimpleNamespace(names=[f"{name}_in{j}" for j in range(len(kept))], reliabilities=rel, kept=kept)
    return pipeline.FamilyStage(name=name, encoder_name=encoder_name, cleaning=spec, encoder=_Enc(fn),
                                output_names=list(outputs))


def _arch(raw):
    c = np.array([0.5, -0.5, 9.0, 0.5, -0.5, 0.5, -0.5, 9.0])
    k = np.array([1.0, 4.0, 2.0, -3.0, 8.0, 0.0, 5.0, 7.0])
    return np.stack([c, k], 1)


def _init(raw):
    return np.stack([raw[:, 0] / 3.0, raw[:, 1] ** 2 / 9.0 - 2.0], 1)


class _Run:
    """fit_feature_pipeline with ``_fit_family``, cleaning and encoding replaced by recorders."""

    def __init__(self, monkeypatch, stages):
        self.fit_calls, self.problem_calls, self.devices = [], [], []
        self.stages = dict(stages)
        orig = TokenizerConfig.dataset_problems

        def problems(cfg, enabled, n_states):
            self.problem_calls.append((dict(enabled), n_states))
            return orig(cfg, enabled, n_states)

        def fit_family(*args):
            self.fit_calls.append(args)
            return self.stages[args[1]]

        def encode_chunks(encoder, chunks, *, device):
            self.devices.append(device)
            return encoder.fn(np.concatenate(list(chunks())))

        monkeypatch.setattr(TokenizerConfig, "dataset_problems", problems)
        monkeypatch.setattr(pipeline, "_fit_family", fit_family)
        monkeypatch.setattr(pipeline, "apply_cleaning", lambda spec, raw: raw + 0.0)
        monkeypatch.setattr(encoders, "encode_chunks", encode_chunks)


def _split():
    val = validation_mask(OP_INDEX, 0.25, 5)
    rows = np.flatnonzero(~val & ~DIVERGED)
    return val, rows, np.flatnonzero(val & ~DIVERGED)


def test_split_used_by_the_fixture_has_the_shape_the_pins_assume():
    """Sanity of the fixture: 2 validation operators, the diverged one in the training split."""
    val, rows, val_rows = _split()
    assert val.sum() == 2 and not val[2] and rows.size == 5 and val_rows.size == 2


def _fixture_values():
    """The split and a fresh source."""
    val, rows, val_rows = _split()
    return val, rows, val_rows, _FakeFile(), None


def test_fit_feature_pipeline_fits_keeps_and_z_scores_on_training_rows(monkeypatch, caplog):
    """Families fitted in config order with (source, name, fam, cfg, exp_cfg, meta, train_mask,
    rows, val_rows, device, progress); the concatenated outputs z-scored with the training rows'
    mean and population std; a column with std == sqrt(variance_floor) is dropped with its
    family, name and std in the reason; reliabilities follow the kept columns."""
    val, rows, val_rows, src, _ = _fixture_values()
    cv = np.full(N, 9.0)
    cv[rows] = [0.5, -0.5, 0.5, -0.5, 0.0]  # training std sqrt(0.2) = 0.447 < 0.5 (9 on the others)
    arch_fn = lambda raw: np.stack([cv, _arch(raw)[:, 1], raw[:, 0] * 0.0 + 3.0], 1)
    stages = {
        "architecture": _stage("architecture", ["arch_c", "arch_k", "arch_z"], arch_fn,
                               reliabilities=[0.5, None, 0.75], kept=[True, True, True]),
        "initial": _stage("initial", ["init_a", "init_b"], _init, reliabilities=[0.9, None, 0.6],
                          kept=[True, False, True]),
    }
    run = _Run(monkeypatch, stages)
    cfg = _cfg()
    progress = object()
    with caplog.at_level(logging.INFO, logger="spinlock_core.tokenizer.pipeline"):
        prep = pipeline.fit_feature_pipeline(src, cfg, device="dev:3", progress=progress)
    # the problems check: family -> present, and the experiment's num_timesteps (no temporal family)
    assert run.problem_calls == [({"architecture": True, "initial": True}, 17)]
    # _fit_family's arguments, in config order
    assert [a[1] for a in run.fit_calls] == ["architecture", "initial"]
    for a, name in zip(run.fit_calls, ["architecture", "initial"]):
        s, _, fam, c2, exp, meta, tm, r, vr, dev, prog = a
        assert s is src and fam is cfg.families[name] and c2 is cfg and exp is src.exp
        assert dev == "dev:3" and prog is progress
        np.testing.assert_array_equal(tm, ~val)
        np.testing.assert_array_equal(r, rows)
        np.testing.assert_array_equal(vr, val_rows)
        np.testing.assert_array_equal(meta["operator_index"], OP_INDEX)
    # encode_family read each flat family with the cleaning's names, default block "mean"
    assert src.asked == [("architecture", ("mean",), ["architecture_in0", "architecture_in1", "architecture_in2"]),
                         ("initial", ("mean",), ["initial_in0", "initial_in1", "initial_in2"])]
    assert run.devices == ["dev:3", "dev:3"]
    # reference: the outputs, the training rows' statistics
    out = np.concatenate([arch_fn(src.raw["architecture"]), _init(src.raw["initial"])], 1)
    std = out[rows].std(0)
    keep = std > 0.5
    assert keep.tolist() == [False, True, False, True, True]
    p = prep.pipeline
    assert p.keep.tolist() == [1, 3, 4]
    assert p.names == ["arch_k", "init_a", "init_b"]
    assert p.column_family == ["architecture", "initial", "initial"]
    assert p.num_features == 3
    assert p.dropped == [
        ("architecture", "arch_c", f"encoder output constant on the training rows (std {std[0]:.3g})"),
        ("architecture", "arch_z", "encoder output constant on the training rows (std 0)"),
    ]
    assert p.dropped[0][2] == "encoder output constant on the training rows (std 0.447)"
    assert p.mean.dtype == np.float32 and p.std.dtype == np.float32
    np.testing.assert_allclose(p.mean, out[rows][:, keep].mean(0), rtol=1e-6)
    np.testing.assert_allclose(p.std, std[keep], rtol=1e-6)
    np.testing.assert_array_equal(p.reliabilities, [1.0, 0.9, 0.6])
    assert prep.x.dtype == np.float32 and prep.x.shape == (N, 3)
    np.testing.assert_allclose(prep.x, (out[:, keep] - out[rows][:, keep].mean(0)) / std[keep], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prep.val_mask, val)
    np.testing.assert_array_equal(prep.train_rows, rows)
    np.testing.assert_array_equal(prep.val_rows, val_rows)
    assert prep.metadata["policies"].tolist() == ["a", "b"] * 4
    assert p.families == [stages["architecture"], stages["initial"]]
    msgs = [r.getMessage() for r in caplog.records if r.name == "spinlock_core.tokenizer.pipeline"]
    assert msgs == [f"split: {rows.size} training operators (1 diverged excluded), {val_rows.size} validation",
                    "tokenizer input: 3 columns (architecture 1, initial 2)"]


def test_fit_feature_pipeline_keeps_a_column_just_above_the_floor(monkeypatch):
    """std exactly sqrt(variance_floor) = 0.5 is dropped; a hair above is kept."""
    _, rows, _, src, _ = _fixture_values()
    at = np.full(N, 7.0)
    # zero-mean training values with sum of squares 5 * 0.25: population std exactly 0.5
    v = np.array([0.75, -0.75, 0.25, -0.25, 0.0])
    assert v.sum() == 0 and (v ** 2).sum() == 1.25 and v.std() == 0.5
    at[rows] = v
    above = at.copy()
    above[rows] = v * 1.001
    fn = lambda raw: np.stack([at, above], 1)
    stages = {"architecture": _stage("architecture", ["at", "above"], fn),
              "initial": _stage("initial", ["init_a", "init_b"], _init)}
    run = _Run(monkeypatch, stages)
    prep = pipeline.fit_feature_pipeline(src, _cfg())
    assert run.devices == ["cpu", "cpu"] and [a[9] for a in run.fit_calls] == ["cpu", "cpu"]
    assert prep.pipeline.names == ["above", "init_a", "init_b"]
    assert [d[1] for d in prep.pipeline.dropped] == ["at"]
    assert prep.pipeline.dropped[0][2] == "encoder output constant on the training rows (std 0.5)"


def test_fit_feature_pipeline_temporal_states_count_and_problems_message(monkeypatch):
    """With a temporal family present, the states stored are TEMPORAL's T; the problems are
    joined "field: reason" with "; " after the path."""
    src = _FakeFile(families=("architecture",), temporal_t=5)
    src.families = ["architecture", "temporal"]
    run = _Run(monkeypatch, {})
    cfg = _cfg({"architecture": {"encoder": "IdentityEncoder"}, "initial": {"encoder": "IdentityEncoder"},
                "temporal": {"encoder": "PooledIdentityEncoder", "states": {"start": 6, "stop": None, "stride": 1}}})
    with pytest.raises(TokenizerDataError) as e:
        pipeline.fit_feature_pipeline(src, cfg)
    assert run.problem_calls == [({"architecture": True, "initial": False, "temporal": True}, 5)]
    assert str(e.value) == (
        "fake.h5 cannot feed this tokenizer config: families.initial: the experiment does not compute this "
        "family (features.initial.enabled is false); families.temporal.states: selects none of the "
        "experiment's 5 states (simulation.num_timesteps)")
    assert run.fit_calls == []


def test_fit_feature_pipeline_names_repeated_columns(monkeypatch):
    """Output names repeated across families raise, naming the sorted repeats (first ten)."""
    _, _, _, src, _ = _fixture_values()
    three = lambda raw: np.stack([raw[:, 0], raw[:, 1], raw[:, 0] + 1], 1)
    two = lambda raw: np.stack([raw[:, 0], raw[:, 1]], 1)
    stages = {"architecture": _stage("architecture", ["b", "a", "c"], three),
              "initial": _stage("initial", ["a", "b"], two)}
    _Run(monkeypatch, stages)
    with pytest.raises(TokenizerDataError, match=r"^column names repeat across families: \['a', 'b'\]$"):
        pipeline.fit_feature_pipeline(src, _cfg())
    many = [f"d{j}" for j in range(11)]
    wide = lambda raw: np.repeat(raw[:, :1], 11, axis=1)
    stages["architecture"] = _stage("architecture", many, wide)
    stages["initial"] = _stage("initial", many[::-1], wide)
    _Run(monkeypatch, stages)
    with pytest.raises(TokenizerDataError) as e:
        pipeline.fit_feature_pipeline(src, _cfg())
    assert str(e.value) == f"column names repeat across families: {sorted(many)[:10]}"
    assert sorted(many)[:10] == ["d0", "d1", "d10", "d2", "d3", "d4", "d5", "d6", "d7", "d8"]


# ------------------------------------------------------------------ _fit_temporal_cleaning


class _Temporal:
    """TEMPORAL ``[N=7, T=6, F=3]`` read in chunks the way FeatureFile reads it."""

    path = Path("t.h5")

    def __init__(self):
        self.data = np.arange(7 * 6 * 3, dtype=np.float32).reshape(7, 6, 3)
        self.reads = []

    def temporal_shape(self):
        return self.data.shape

    def temporal_names(self):
        return ["ta", "tb", "tc"]

    def temporal_chunks(self, states=slice(1, None), chunk=256, rows=None):
        idx = np.arange(7) if rows is None else np.asarray(rows)
        self.reads.append((states, chunk, idx.tolist()))
        for i in range(0, idx.size, chunk):
            part = idx[i:i + chunk]
            yield part, self.data[part][:, states]


@pytest.mark.parametrize("fit_rows, rows, per_op", [
    (7, [0, 2, 3, 5], 1), (9, [0, 2, 3, 5], 2), (10, [0, 2, 3, 5], 2), (1000, [0, 2, 3, 5], 3),
    (3, [0, 2, 3, 5], 1),  # 3 // 4 = 0 -> at least one state per operator
    (2, [4], 2),  # one training operator: 2 // 1
    (2, [1, 4, 6], 1),  # 2 // 3 = 0 -> 1, and a last chunk of one operator
])
def test_fit_temporal_cleaning_pools_seeded_states_of_every_training_operator(monkeypatch, caplog, fit_rows, rows,
                                                                              per_op):
    """per operator: clip(TEMPORAL_FIT_ROWS // rows, 1, states selected) states, a seeded choice
    (argsort of the "tokenizer"/4 stream), read TEMPORAL_CHUNK operators at a time; strata repeat
    each operator's policy; min_reliability forced to 0; documented NaN of TEMPORAL."""
    monkeypatch.setattr(pipeline, "TEMPORAL_FIT_ROWS", fit_rows)
    monkeypatch.setattr(pipeline, "TEMPORAL_CHUNK", 2)
    calls = {}

    def fit_cleaning(x, names, **kw):
        calls["fit"] = (x, names, kw)
        return "SPEC"

    def documented_nan(path, exp):
        calls["doc"] = (path, exp)
        return "DOC"

    monkeypatch.setattr(pipeline, "fit_cleaning", fit_cleaning)
    monkeypatch.setattr(pipeline, "documented_nan", documented_nan)
    cfg = _cfg({"temporal": {"encoder": "PooledIdentityEncoder", "states": {"start": 1, "stop": 6, "stride": 2}}})
    src, rows = _Temporal(), np.array(rows)
    policies = np.array(["p0", "p1", "p2", "p3", "p4", "p5", "p6"])
    exp = object()
    with caplog.at_level(logging.INFO, logger="spinlock_core.tokenizer.pipeline"):
        out = pipeline._fit_temporal_cleaning(src, cfg.families["temporal"], rows, policies, exp, cfg, 23)
    assert out == "SPEC"
    assert src.reads == [(slice(1, 6, 2), 2, rows.tolist())]
    # reference: states 1, 3, 5 (3 of them); the same stream, chunk by chunk
    rng = numpy_generator(23, "tokenizer", 4)
    ref = []
    for i0 in range(0, rows.size, 2):
        part = rows[i0:i0 + 2]
        x = src.data[part][:, 1:6:2]
        pick = np.argsort(rng.random((part.size, 3)), axis=1)[:, :per_op]
        for i in range(part.size):
            ref.extend(x[i, pick[i]])
    x, names, kw = calls["fit"]
    np.testing.assert_array_equal(x, np.array(ref))
    assert x.shape == (rows.size * per_op, 3) and names == ["ta", "tb", "tc"]
    assert kw.pop("strata").tolist() == [f"p{r}" for r in rows for _ in range(per_op)]
    assert kw.pop("documented_nan") == "DOC" and kw.pop("family") == "temporal"
    assert kw == {**FIT_KWARGS, "min_reliability": 0.0}
    assert calls["doc"] == (PATHS.TEMPORAL, exp)
    msgs = [r.getMessage() for r in caplog.records if r.name == "spinlock_core.tokenizer.pipeline"]
    assert msgs == [(f"temporal: cleaning fitted on {rows.size * per_op} (operator, state) rows "
                     f"({per_op} states of each of {rows.size} operators)")]


# ---------------------------------------------------------- small pipeline helpers


def test_clean_sequence_pools_rows_and_restores_the_shape(monkeypatch):
    """``[n, T', F] -> [n, T', F_kept]`` float32: cleaning sees ``[n T', F]`` rows in operator-major
    order (non-square shapes so axes cannot be confused)."""
    seen = {}

    def apply(spec, x2):
        seen["x"], seen["spec"] = x2.copy(), spec
        return x2[:, [0, 2]] * 2.0

    monkeypatch.setattr(pipeline, "apply_cleaning", apply)
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    out = pipeline._clean_sequence("S", x)
    assert seen["spec"] == "S"
    np.testing.assert_array_equal(seen["x"], x.reshape(6, 4))
    assert out.dtype == np.float32 and out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out, x[:, :, [0, 2]] * 2.0)


def test_output_reliabilities_identity_takes_kept_ones_else_ones():
    """Identity encoder: the kept columns' reliabilities, None -> 1; any other encoder: ones."""
    st = _stage("initial", ["a", "b", "c"], None, reliabilities=[0.25, None, 0.5, 0.75],
                kept=[True, True, False, True])
    r = pipeline._output_reliabilities(st)
    assert r.tolist() == [0.25, 1.0, 0.75]
    other = _stage("initial", ["a", "b"], None, encoder_name="MLPEncoder", reliabilities=[0.25, 0.5])
    r2 = pipeline._output_reliabilities(other)
    assert r2.tolist() == [1.0, 1.0] and r2.shape == (2,)


def test_transform_selects_kept_columns_and_z_scores(monkeypatch):
    """``transform``: raw outputs ``[:, keep]`` minus mean over std, float32; device passed on."""
    seen = []
    raw = np.arange(12, dtype=np.float64).reshape(3, 4)
    pipe = pipeline.FeaturePipeline(families=[], names=["b", "d"], column_family=["x", "x"],
                                    mean=np.array([1.0, 2.0], np.float32), std=np.array([2.0, 4.0], np.float32),
                                    keep=np.array([1, 3]))
    monkeypatch.setattr(pipeline.FeaturePipeline, "raw_outputs",
                        lambda self, source, *, device: seen.append((source, device)) or raw)
    out = pipe.transform("SRC", device="dev:1")
    assert seen == [("SRC", "dev:1")]
    pipe.transform("SRC")
    assert seen[-1] == ("SRC", "cpu")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 0.25], [2.0, 1.25], [4.0, 2.25]])


# ------------------------------------------------------------------------------ pipeline_io


def _io_pipeline(tmp_path):
    """Two families (a flat one with blocks and a pretrain record, a sequence one with states) and
    categories, written with write_pipeline; returns (folder, pipe, cats, manifest fields)."""
    from spinlock_core.tokenizer.categories import Categories
    from spinlock_core.tokenizer.cleaning import fit_cleaning
    from spinlock_core.tokenizer.encoders.identity import IdentityEncoder
    from spinlock_core.tokenizer.pipeline_io import pipeline_fields, write_pipeline

    rng = np.random.default_rng(0)
    s1 = fit_cleaning(rng.normal(size=(20, 2)), ["p", "q"], family="summary", heavy_tail_rule="none")
    s2 = fit_cleaning(rng.normal(size=(20, 3)), ["u", "v", "w"], family="temporal", heavy_tail_rule="none")
    pretrain = {"steps": 7, "learning_rate": 0.002, "final_train_loss": 0.5, "val_loss": None,
                "seconds": 1.5, "history": [{"step": 7, "loss": 0.25}]}
    stages = [
        pipeline.FamilyStage(name="summary", encoder_name="MLPEncoder", cleaning=s1, encoder=IdentityEncoder(2),
                             output_names=["sa", "sb"], blocks=("cv", "mean"), pretrain=pretrain),
        pipeline.FamilyStage(name="temporal", encoder_name="PooledIdentityEncoder", cleaning=s2,
                             encoder=IdentityEncoder(3), output_names=["ta", "tb", "tc"], states=(2, None, 3)),
    ]
    pipe = pipeline.FeaturePipeline(families=stages, names=["sa", "ta", "tc"], column_family=["summary", "temporal",
                                                                                              "temporal"],
                                    mean=np.array([0.5, -1.25, 2.0], np.float32),
                                    std=np.array([1.0, 0.25, 4.0], np.float32),
                                    dropped=[("summary", "sb", "constant"), ("temporal", "tb", "flat")],
                                    keep=np.array([0, 2, 4]), reliabilities=np.array([0.75, 1.0, 1.0]))
    cats = Categories(names=("sa", "ta", "tc"), assignment=np.array([0, 1, 1]), requested_num_categories=2,
                      num_clusters_cut=2, min_size=1, silhouette_k=(), silhouette=(), silhouette_final=0.5,
                      orthogonality=0.125)
    folder = tmp_path / "ck"
    folder.mkdir()
    write_pipeline(folder, pipe, cats)
    return folder, pipe, cats, json.loads(json.dumps(pipeline_fields(pipe)))


def test_pipeline_fields_record_every_family_field(tmp_path):
    """The manifest entry of each family: name, encoder, blocks, states, output and input columns,
    pretrain; and the pipeline's arrays as plain lists."""
    folder, pipe, cats, fields = _io_pipeline(tmp_path)
    assert (folder / "categories.json").read_text() == cats.to_json(indent=1)
    assert (folder / "cleaning" / "temporal.json").read_text() == pipe.families[1].cleaning.to_json()
    assert torch.load(folder / "encoders" / "summary.pt", weights_only=True)["kwargs"] == {"input_dim": 2}
    fam = fields["families"]
    assert fam[0] == {"name": "summary", "encoder": "MLPEncoder", "blocks": ["cv", "mean"], "states": None,
                      "output_names": ["sa", "sb"], "input_columns": ["p", "q"],
                      "pretrain": pipe.families[0].pretrain}
    assert fam[1] == {"name": "temporal", "encoder": "PooledIdentityEncoder", "blocks": [], "states": [2, None, 3],
                      "output_names": ["ta", "tb", "tc"], "input_columns": ["u", "v", "w"], "pretrain": None}
    assert {k: v for k, v in fields.items() if k != "families"} == {
        "names": ["sa", "ta", "tc"], "column_family": ["summary", "temporal", "temporal"], "keep": [0, 2, 4],
        "mean": [0.5, -1.25, 2.0], "std": [1.0, 0.25, 4.0], "reliabilities": [0.75, 1.0, 1.0],
        "dropped": [["summary", "sb", "constant"], ["temporal", "tb", "flat"]]}


def test_read_pipeline_round_trips_every_field(tmp_path):
    """read_pipeline rebuilds each stage (name, encoder name, cleaning, encoder, outputs, blocks and
    states as tuples, the pretrain record) and the pipeline's arrays with their dtypes."""
    from spinlock_core.tokenizer.encoders.identity import IdentityEncoder
    from spinlock_core.tokenizer.pipeline_io import read_pipeline

    folder, pipe, cats, fields = _io_pipeline(tmp_path)
    back, cats_back = read_pipeline(str(folder), fields)
    for a, b in zip(back.families, pipe.families):
        assert (a.name, a.encoder_name, a.output_names) == (b.name, b.encoder_name, b.output_names)
        assert a.blocks == b.blocks and isinstance(a.blocks, tuple)
        assert a.states == b.states and (a.states is None or isinstance(a.states, tuple))
        assert a.pretrain == b.pretrain
        assert a.cleaning.to_json() == b.cleaning.to_json()
        assert isinstance(a.encoder, IdentityEncoder) and a.encoder.input_dim == b.encoder.input_dim
    assert len(back.families) == 2
    assert back.families[0].pretrain["history"] == [{"step": 7, "loss": 0.25}]
    assert back.families[1].is_sequence and back.families[1].state_slice() == slice(2, None, 3)
    assert back.names == ["sa", "ta", "tc"] and back.column_family == ["summary", "temporal", "temporal"]
    assert back.mean.dtype == np.float32 and back.mean.tolist() == [0.5, -1.25, 2.0]
    assert back.std.dtype == np.float32 and back.std.tolist() == [1.0, 0.25, 4.0]
    assert back.keep.dtype == np.int64 and back.keep.tolist() == [0, 2, 4]
    assert back.reliabilities.dtype == np.float64 and back.reliabilities.tolist() == [0.75, 1.0, 1.0]
    assert back.dropped == [("summary", "sb", "constant"), ("temporal", "tb", "flat")]
    assert cats_back.to_json() == cats.to_json()
    # a family record without "pretrain" (an older manifest) reads as None
    del fields["families"][0]["pretrain"]
    assert read_pipeline(folder, fields)[0].families[0].pretrain is None


@pytest.mark.parametrize("field", ["families", "names", "column_family", "mean", "std", "dropped", "keep",
                                   "reliabilities"])
def test_read_pipeline_names_a_missing_manifest_field(tmp_path, field):
    """A field the manifest lacks is named in a CheckpointError."""
    from spinlock_core.tokenizer.checkpoint import CheckpointError
    from spinlock_core.tokenizer.pipeline_io import read_pipeline

    folder, _, _, fields = _io_pipeline(tmp_path)
    del fields[field]
    with pytest.raises(CheckpointError) as e:
        read_pipeline(folder, fields)
    assert str(e.value) == f"{folder}: the manifest lacks the field '{field}'"


@pytest.mark.parametrize("field", ["name", "encoder", "output_names", "blocks", "states"])
def test_read_pipeline_names_a_missing_family_field(tmp_path, field):
    """A family record's missing field is named too."""
    from spinlock_core.tokenizer.checkpoint import CheckpointError
    from spinlock_core.tokenizer.pipeline_io import read_pipeline

    folder, _, _, fields = _io_pipeline(tmp_path)
    del fields["families"][1][field]
    with pytest.raises(CheckpointError) as e:
        read_pipeline(folder, fields)
    assert str(e.value) == f"{folder}: the manifest lacks the field '{field}'"


@pytest.mark.parametrize("missing", ["cleaning/temporal.json", "encoders/temporal.pt", "categories.json"])
def test_read_pipeline_names_a_missing_file_relative_to_the_folder(tmp_path, missing):
    """A missing per-family file or categories.json is named relative to the folder."""
    from spinlock_core.tokenizer.checkpoint import CheckpointError
    from spinlock_core.tokenizer.pipeline_io import read_pipeline

    folder, _, _, fields = _io_pipeline(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(CheckpointError) as e:
        read_pipeline(folder, fields)
    assert str(e.value) == f"{folder}: missing file {missing}"


# ------------------------------------------------------------------------------ ArrayFeatures


def test_array_features_refuses_unknown_families_and_disagreeing_sizes():
    """Unknown families named with the known ones; operator counts per family (a 0-d array counts
    -1); the arrays' identity fields."""
    from spinlock_core.tokenizer.data import ArrayFeatures

    with pytest.raises(TokenizerDataError) as e:
        ArrayFeatures({})
    assert str(e.value) == "no feature arrays given"
    with pytest.raises(TokenizerDataError) as e:
        ArrayFeatures({"initial": np.zeros((2, 3)), "bogus": 1, "weird": 2})
    assert str(e.value) == ("unknown feature families ['bogus', 'weird']; "
                            "known: ['architecture', 'initial', 'summary', 'temporal']")
    with pytest.raises(TokenizerDataError) as e:
        ArrayFeatures({"initial": np.zeros((3, 42)), "architecture": np.zeros((4, 5))})
    assert str(e.value) == "feature arrays disagree on the number of operators: {'initial': 3, 'architecture': 4}"
    with pytest.raises(TokenizerDataError) as e:
        ArrayFeatures({"initial": np.float64(2.0), "architecture": np.zeros((1, 5))})
    assert str(e.value) == "feature arrays disagree on the number of operators: {'initial': -1, 'architecture': 1}"
    a = ArrayFeatures({"initial": [[1, 2], [3, 4], [5, 6]], "architecture": np.zeros((3, 1))})
    assert a.path == Path("<arrays>") and a.n == 3 and a.families == ["initial", "architecture"]
    assert isinstance(a._arrays["initial"], np.ndarray)


def test_array_features_get_messages():
    """A family the arrays lack, and a wrong number of dimensions, are named."""
    from spinlock_core.tokenizer.data import ArrayFeatures

    a = ArrayFeatures({"initial": np.zeros((3, 4)), "architecture": np.zeros(3)})
    with pytest.raises(TokenizerDataError) as e:
        a.temporal_shape()
    assert str(e.value) == "the tokenizer needs the temporal family, which the arrays do not hold (given: initial, architecture)"
    with pytest.raises(TokenizerDataError) as e:
        a.matrix("architecture")
    assert str(e.value) == "architecture must have 2 dimensions, got shape (3,)"
    with pytest.raises(TokenizerDataError) as e:
        a.matrix("initial", expected=["a", "b"])
    assert str(e.value) == "initial has 4 columns, the tokenizer was trained on 2"


def test_array_features_matrix_selects_summary_blocks_in_the_order_asked():
    """summary ``[N, 360]`` (stored order mean | std | cv): the blocks asked for, 120 columns each,
    in the order asked (all three in stored order pass as given); other widths and other families
    pass as given; float64; default names."""
    from spinlock_core.tokenizer.data import ArrayFeatures

    s = np.arange(2 * 360).reshape(2, 360)
    a = ArrayFeatures({"summary": s, "initial": np.arange(2 * 360).reshape(2, 360) * 2,
                       "architecture": np.arange(2 * 120).reshape(2, 120)})
    x, names = a.matrix("summary", blocks=("std",))
    assert x.dtype == np.float64 and x.shape == (2, 120)
    np.testing.assert_array_equal(x, s[:, 120:240])
    assert names == [f"summary_{j}" for j in range(120)]
    x, _ = a.matrix("summary", blocks=("cv", "mean"))
    np.testing.assert_array_equal(x, np.concatenate([s[:, 240:], s[:, :120]], 1))
    x, _ = a.matrix("summary")  # default: the mean block
    np.testing.assert_array_equal(x, s[:, :120])
    x, _ = a.matrix("summary", blocks=("mean", "std", "cv"))
    np.testing.assert_array_equal(x, s)
    # all three blocks in another order: reordered as a FeatureFile orders them (this passed the
    # stored order through once, silently mis-tokenizing arrays for a config with cv | std | mean)
    x, _ = a.matrix("summary", blocks=("cv", "std", "mean"))
    np.testing.assert_array_equal(x, np.concatenate([s[:, 240:], s[:, 120:240], s[:, :120]], 1))
    x, names = a.matrix("initial", blocks=("std",), expected=[f"n{j}" for j in range(360)])
    np.testing.assert_array_equal(x, s * 2)
    assert names == [f"n{j}" for j in range(360)]
    x, names = a.matrix("architecture", blocks=("cv",))
    assert x.shape == (2, 120) and names[:2] == ["architecture_0", "architecture_1"]
    b = ArrayFeatures({"summary": np.arange(3 * 120).reshape(3, 120)})
    x, _ = b.matrix("summary", blocks=("std",))
    np.testing.assert_array_equal(x, np.arange(3 * 120).reshape(3, 120))


def test_array_features_temporal_chunks_and_shape():
    """``(rows [n], x [n, T', 63] float32)`` for ``chunk`` operators at a time; default rows all and
    states ``1:``; a selection of no state is named with T."""
    from spinlock_core.tokenizer.data import ArrayFeatures

    t = np.arange(5 * 4 * 2, dtype=np.float64).reshape(5, 4, 2)
    a = ArrayFeatures({"temporal": t})
    assert a.temporal_shape() == (5, 4, 2) and all(type(v) is int for v in a.temporal_shape())
    got = list(a.temporal_chunks(chunk=2))
    assert [p.tolist() for p, _ in got] == [[0, 1], [2, 3], [4]]
    for p, x in got:
        assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(x, t[p][:, 1:])
    got = list(a.temporal_chunks(slice(0, 4, 2), 3, rows=[1, 4]))
    assert [p.tolist() for p, _ in got] == [[1, 4]]
    np.testing.assert_array_equal(got[0][1], t[[1, 4]][:, 0:4:2])
    assert [p.tolist() for p, _ in a.temporal_chunks()] == [[0, 1, 2, 3, 4]]
    with pytest.raises(TokenizerDataError) as e:
        list(a.temporal_chunks(slice(4, None)))
    assert str(e.value) == "states slice(4, None, None) select no state of T = 4"


# ------------------------------------------------------------------------------------------ api


def test_as_source_dispatches_on_the_type(monkeypatch):
    """FeatureFile / ArrayFeatures pass through; a mapping becomes ArrayFeatures (a copy as dict);
    a str or Path opens a FeatureFile; anything else is a TypeError naming the type."""
    from collections import OrderedDict

    from spinlock_core.tokenizer import api
    from spinlock_core.tokenizer.data import ArrayFeatures

    ff = _FakeFile()
    assert api.as_source(ff) is ff
    arr = ArrayFeatures({"initial": np.zeros((2, 3))})
    assert api.as_source(arr) is arr
    got = api.as_source(OrderedDict(initial=np.ones((2, 3))))
    assert isinstance(got, ArrayFeatures) and got.families == ["initial"] and got.n == 2

    class Opened:
        def __init__(self, p):
            self.p = p

    monkeypatch.setattr(api, "FeatureFile", Opened)
    assert api.as_source("a.h5").p == "a.h5"
    assert api.as_source(Path("b.h5")).p == Path("b.h5")
    with pytest.raises(TypeError) as e:
        api.as_source(3)
    assert str(e.value) == "tokenize takes a dataset path, a FeatureFile or a mapping family -> array, got int"


class _Model(torch.nn.Module):
    pass


def test_tokenizer_properties_features_and_tokenize(monkeypatch):
    """The model is put in eval mode; checkpoint id ("" when absent), codebook sizes, token names
    (category-major, two-digit category), config; features/tokenize pass the device and batch."""
    from spinlock_core.tokenizer import api

    cats = SimpleNamespace(num_categories=2)
    seen = []
    pipe = SimpleNamespace(transform=lambda src, *, device: seen.append(("t", src, device)) or np.ones((2, 3)))
    model = _Model()
    model.train()
    tok = api.Tokenizer(pipe, cats, model, {"codebook_sizes": (4, 3, 2, 5, 6, 7), "config": _cfg().model_dump()})
    assert not model.training and tok.folder is None
    assert tok.checkpoint_id == "" and tok.num_categories == 2
    assert tok.codebook_sizes == [4, 3, 2, 5, 6, 7]
    assert tok.token_names == ["category_00_level_0", "category_00_level_1", "category_00_level_2",
                               "category_01_level_0", "category_01_level_1", "category_01_level_2"]
    assert tok.config == _cfg()
    tok.manifest["checkpoint_id"] = "abc"
    assert tok.checkpoint_id == "abc"
    ff = _FakeFile()
    assert tok.features(ff, device="dev:2").tolist() == [[1.0] * 3] * 2
    assert seen == [("t", ff, "dev:2")]
    tok.features(ff)
    assert seen[-1] == ("t", ff, "cpu")
    assert api.Tokenizer(pipe, cats, model, {}, folder=Path("somewhere")).folder == Path("somewhere")

    def tokenize_array(m, x, *, device, batch):
        seen.append(("k", m, x.shape, device, batch))
        return "TOKENS"

    monkeypatch.setattr(api, "tokenize_array", tokenize_array)
    assert tok.tokenize(ff, device="dev:5", batch_size=7) == "TOKENS"
    assert seen[-2:] == [("t", ff, "dev:5"), ("k", model, (2, 3), "dev:5", 7)]
    tok.tokenize(ff)
    assert seen[-2:] == [("t", ff, "cpu"), ("k", model, (2, 3), "cpu", 8192)]


@pytest.mark.parametrize("key", ["init_kwargs", "state_dict"])
def test_tokenizer_load_names_what_the_model_file_lacks(tmp_path, key, monkeypatch):
    """A model.pt without ``init_kwargs`` or ``state_dict`` is a CheckpointError naming the key
    (``verify=False``); by default the files' recorded hashes are checked first."""
    from spinlock_core.tokenizer import api
    from spinlock_core.tokenizer import checkpoint as ck
    from spinlock_core.tokenizer import model as model_mod
    from spinlock_core.tokenizer.pipeline_io import write_pipeline

    folder, pipe, cats, fields = _io_pipeline(tmp_path)
    write_pipeline(folder, pipe, cats)
    (folder / ck.METRICS).write_text("{}")
    (folder / ck.HISTORY).write_text("{}")
    (folder / ck.MANIFEST).write_text(json.dumps({"format": ck.FORMAT, "version": ck.VERSION, **fields,
                                                  "files": {"metrics.json": "0" * 64}}))
    state = {"init_kwargs": {}, "state_dict": {}}
    del state[key]
    torch.save(state, folder / ck.MODEL)
    monkeypatch.setattr(model_mod, "CategoricalVQVAE", lambda **kw: _Model())
    with pytest.raises(ck.CheckpointError) as e:
        api.Tokenizer.load(folder, verify=False)
    assert str(e.value) == f"{folder}: model.pt lacks '{key}'"
    # verified by default: the recorded hash of metrics.json does not match
    with pytest.raises(ck.CheckpointError) as e:
        api.Tokenizer.load(str(folder))
    assert str(e.value) == f"{folder}: metrics.json does not match its recorded SHA-256 (changed or corrupted)"


def test_fit_feature_pipeline_opens_a_path_as_a_feature_file(monkeypatch):
    """A path (not a FeatureFile) is opened with FeatureFile(path) first."""
    _, _, _, src, _ = _fixture_values()
    opened = []

    class Opener:
        def __new__(cls, p):
            opened.append(p)
            return src

    monkeypatch.setattr(pipeline, "FeatureFile", Opener)
    stages = {"architecture": _stage("architecture", ["k"], lambda raw: _arch(raw)[:, 1:]),
              "initial": _stage("initial", ["init_a", "init_b"], _init)}
    _Run(monkeypatch, stages)
    prep = pipeline.fit_feature_pipeline("data.h5", _cfg())
    assert opened == ["data.h5"] and prep.pipeline.names == ["k", "init_a", "init_b"]


def test_encode_family_reads_blocks_and_chunks(monkeypatch):
    """Flat family: the stage's blocks and cleaned names are asked, the cleaned float32 matrix is
    encoded; sequence family: the stage's states are read TEMPORAL_CHUNK operators at a time and
    each chunk cleaned; the device is passed to encode_chunks."""
    seen = []

    def encode_chunks(encoder, chunks, *, device):
        got = list(chunks())
        seen.append((encoder, [c.dtype for c in got], device))
        return np.concatenate([c.reshape(c.shape[0], -1) for c in got])

    monkeypatch.setattr(encoders, "encode_chunks", encode_chunks)
    cleaned = []
    monkeypatch.setattr(pipeline, "apply_cleaning", lambda spec, raw: cleaned.append(spec) or raw * 2.0)
    src = _FakeFile()
    st = _stage("initial", ["a", "b"], None)
    st.blocks = ("cv", "mean")
    pipe = pipeline.FeaturePipeline(families=[st], names=[], column_family=[], mean=np.zeros(0), std=np.ones(0))
    out = pipe.encode_family(src, st, device="dev:9")
    assert src.asked == [("initial", ("cv", "mean"), ["initial_in0", "initial_in1"])]
    np.testing.assert_array_equal(out, src.raw["initial"] * 2.0)
    assert seen == [(st.encoder, [np.float32], "dev:9")] and cleaned == [st.cleaning]

    monkeypatch.setattr(pipeline, "TEMPORAL_CHUNK", 2)
    specs = []
    monkeypatch.setattr(pipeline, "_clean_sequence", lambda spec, x: specs.append(spec) or (x + 1.0).astype(np.float32))
    tsrc = _Temporal()
    seq = pipeline.FamilyStage(name="temporal", encoder_name="PooledIdentityEncoder", cleaning="S", encoder="E",
                               output_names=["t"], states=(1, 5, 3))
    out = pipe.encode_family(tsrc, seq)
    np.testing.assert_array_equal(out, (tsrc.data[:, 1:5:3] + 1.0).reshape(7, -1))
    assert seen[-1] == ("E", [np.float32] * 4, "cpu")
    assert tsrc.reads == [(slice(1, 5, 3), 2, list(range(7)))] and specs == ["S"] * 4


# ------------------------------------------------------------------------------ FeatureFile


def _file(path, *, n=4, layout=True, diverged=True, datasets=None, attrs=None):
    """A small HDF5 file: ``metadata/diverged [n]`` and the given datasets (path -> (data, names))."""
    import h5py

    from spinlock_core.storage.layout import LAYOUT_VERSION

    with h5py.File(path, "w") as f:
        if layout:
            f.attrs["layout_version"] = LAYOUT_VERSION
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        if diverged:
            f.create_dataset(PATHS.DIVERGED, data=np.array([False, True, False, False][:n] + [False] * (n - 4)))
        for p, (data, names) in (datasets or {}).items():
            ds = f.create_dataset(p, data=data)
            if names is not None:
                ds.attrs["feature_names"] = names
    return path


def test_feature_file_refuses_other_files_by_name(tmp_path):
    """No layout version, and no metadata/diverged, are named with the path; so is a file that is
    not there; an unknown family is named with the known ones."""
    from spinlock_core.storage.shards import StorageError, open_h5

    with pytest.raises(StorageError) as ref, open_h5(tmp_path / "nope.h5"):
        pass
    with pytest.raises(TokenizerDataError) as e:
        FeatureFile(tmp_path / "nope.h5")
    assert str(e.value) == str(ref.value) and str(tmp_path / "nope.h5") in str(e.value)
    empty = FeatureFile(_file(tmp_path / "empty.h5"))
    with pytest.raises(TokenizerDataError) as e:
        empty.matrix("bogus")
    assert str(e.value) == "unknown feature family 'bogus'; known: ['architecture', 'initial', 'summary', 'temporal']"
    with pytest.raises(TokenizerDataError) as e:
        empty.matrix("initial")
    assert str(e.value) == (f"{tmp_path / 'empty.h5'}: the tokenizer needs the initial family "
                            f"({PATHS.INITIAL}), which this dataset does not hold (it holds: no feature family)")
    p = _file(tmp_path / "old.h5", layout=False)
    with pytest.raises(TokenizerDataError) as e:
        FeatureFile(p)
    assert str(e.value) == f"{p}: not a Spinlock file (no layout_version attribute)"
    q = _file(tmp_path / "nodiv.h5", diverged=False)
    with pytest.raises(TokenizerDataError) as e:
        FeatureFile(q)
    assert str(e.value) == f"{q}: not a consolidated Spinlock dataset (no metadata/diverged)"


def test_feature_file_metadata_config_and_names(tmp_path):
    """metadata: bool diverged, str policies and ic types, int64 operator index (or arange when not
    stored); the config attribute's absence named; byte names decoded; names without the attribute
    are none (a column-count mismatch)."""
    p = _file(tmp_path / "m.h5", datasets={
        PATHS.POLICIES: (np.array([b"res", b"cvx", b"res", b"cvx"]), None),
        PATHS.IC_TYPES: (np.array([b"a", b"b", b"c", b"d"]), None),
        PATHS.OPERATOR_INDEX: (np.array([5, 6, 7, 8], np.int32), None),
        PATHS.INITIAL: (np.arange(8.0).reshape(4, 2), np.array([b"i0", b"i1"], dtype="S2")),
        PATHS.ARCHITECTURE: (np.arange(12.0).reshape(4, 3), None),
        PATHS.TEMPORAL: (np.zeros((4, 3, 2)), ["t0", "t1"]),
    })
    ff = FeatureFile(p)
    assert ff.n == 4 and ff.families == ["temporal", "architecture", "initial"]
    m = ff.metadata()
    assert sorted(m) == ["diverged", "ic_types", "operator_index", "policies"]
    assert m["diverged"].dtype == bool and m["diverged"].tolist() == [False, True, False, False]
    assert m["policies"].tolist() == ["res", "cvx", "res", "cvx"] and m["ic_types"].tolist() == ["a", "b", "c", "d"]
    assert m["operator_index"].dtype == np.int64 and m["operator_index"].tolist() == [5, 6, 7, 8]
    with pytest.raises(TokenizerDataError) as e:
        ff.experiment_config()
    assert str(e.value) == f"{p}: no 'config' attribute (not written by Spinlock)"
    x, names = ff.matrix("initial")
    assert names == ["i0", "i1"] and x.dtype == np.float64
    np.testing.assert_array_equal(x, np.arange(8.0).reshape(4, 2))
    assert ff.temporal_names() == ["t0", "t1"] and ff.temporal_shape() == (4, 3, 2)
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("architecture")
    assert str(e.value) == f"{p}: /{PATHS.ARCHITECTURE} has 3 columns but 0 feature names"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("temporal")
    assert str(e.value) == "the temporal family is a sequence: read it with temporal_chunks()"
    with pytest.raises(TokenizerDataError) as e:
        ff.per_realization()
    assert str(e.value) == f"{p}: no {PATHS.SUMMARY_TRAJ} (the SUMMARY family is needed)"
    q = _file(tmp_path / "noidx.h5", n=5, datasets={PATHS.POLICIES: (np.array([b"r"] * 5), None),
                                                    PATHS.IC_TYPES: (np.array([b"a"] * 5), None)})
    mq = FeatureFile(q).metadata()
    assert mq["operator_index"].dtype == np.int64 and mq["operator_index"].tolist() == [0, 1, 2, 3, 4]


def test_feature_file_expect_details(tmp_path):
    """Columns that differ from the trained ones: missing and unexpected (first ten), or the same
    names in another order; with both counts."""
    names = [f"c{j}" for j in range(13)]
    p = _file(tmp_path / "e.h5", datasets={PATHS.INITIAL: (np.zeros((4, 13)), names)})
    ff = FeatureFile(p)
    assert ff.matrix("initial", expected=names)[1] == names
    head = f"{p}: the initial columns differ from the ones the tokenizer was trained on"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("initial", expected=names[::-1])
    assert str(e.value) == f"{head} (13 here, 13 expected): same names in another order"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("initial", expected=names[:12] + ["x"])
    assert str(e.value) == f"{head} (13 here, 13 expected): missing ['x']; unexpected ['c12']"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("initial", expected=names[:2])
    assert str(e.value) == f"{head} (13 here, 2 expected): unexpected {names[2:12]}"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("initial", expected=names + [f"m{j}" for j in range(11)])
    assert str(e.value) == f"{head} (13 here, 24 expected): missing {[f'm{j}' for j in range(10)]}"


def test_feature_file_summary_blocks_checks(tmp_path):
    """Empty or unknown blocks, and an aggregated matrix that is not 360 wide, are named."""
    p = _file(tmp_path / "s.h5", datasets={PATHS.SUMMARY_AGG: (np.zeros((4, 6)), [f"s{j}" for j in range(6)])})
    ff = FeatureFile(p)
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("summary", blocks=())
    assert str(e.value) == "summary blocks must be a non-empty subset of ('mean', 'std', 'cv'), got []"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("summary", blocks=("mean", "max"))
    assert str(e.value) == "summary blocks must be a non-empty subset of ('mean', 'std', 'cv'), got ['mean', 'max']"
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("summary")
    assert str(e.value) == (f"{p}: /{PATHS.SUMMARY_AGG} has 6 columns, expected 360 "
                            "(SUMMARY aggregated [mean | std | cv] of 120 columns)")
    full = np.arange(2 * 360, dtype=np.float32).reshape(2, 360)
    names = [f"s{j}" for j in range(360)]
    q = _file(tmp_path / "s2.h5", n=2, datasets={PATHS.SUMMARY_AGG: (full, names)})
    x, got = FeatureFile(q).matrix("summary", blocks=("std", "mean"))
    np.testing.assert_array_equal(x, np.concatenate([full[:, 120:240], full[:, :120]], 1))
    assert got == names[120:240] + names[:120]
    # the same stored matrix given as an array gives the same columns for every block order
    from itertools import permutations

    from spinlock_core.tokenizer.data import ArrayFeatures
    arrays = ArrayFeatures({"summary": full})
    for k in (1, 2, 3):
        for blocks in permutations(("mean", "std", "cv"), k):
            np.testing.assert_array_equal(arrays.matrix("summary", blocks=blocks)[0],
                                          FeatureFile(q).matrix("summary", blocks=blocks)[0], err_msg=str(blocks))


def test_feature_file_from_shard_reads_the_stage_files_that_exist(tmp_path):
    """A shard's stage files map their datasets; a shard without a rollouts file is named; only the
    families whose stage file exists are listed; the name is ``shards/shard-XXXX``."""
    root = tmp_path / "exp"
    paths = SimpleNamespace(root=root, shard=lambda stage, k: root / "shards" / stage / f"shard-{k:04d}.h5")
    with pytest.raises(TokenizerDataError) as e:
        FeatureFile.from_shard(paths, 3)
    assert str(e.value) == f"shard 3 of {paths.root}: no rollouts file ({paths.shard('rollouts', 3)})"
    roll = paths.shard("rollouts", 3)
    roll.parent.mkdir(parents=True)
    _file(roll, datasets={PATHS.POLICIES: (np.array([b"r"] * 4), None)})
    ics = paths.shard("initial_conditions", 3)
    ics.parent.mkdir(parents=True)
    _file(ics, diverged=False, datasets={PATHS.IC_TYPES: (np.array([b"g", b"h", b"g", b"h"]), None),
                                         PATHS.OPERATOR_INDEX: (np.array([12, 13, 14, 15]), None)})
    summ = paths.shard("features_summary", 3)
    summ.parent.mkdir(parents=True)
    per = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    _file(summ, diverged=False, datasets={PATHS.SUMMARY_TRAJ: (per, ["r0", "r1", "r2"])})
    tem = paths.shard("features_temporal", 3)
    tem.parent.mkdir(parents=True)
    _file(tem, diverged=False, datasets={PATHS.TEMPORAL: (np.zeros((4, 5, 2)), ["t0", "t1"])})
    ini = paths.shard("features_initial", 3)
    ini.parent.mkdir(parents=True)
    _file(ini, diverged=False, datasets={PATHS.INITIAL: (np.ones((4, 2)), ["a", "b"])})
    ff = FeatureFile.from_shard(paths, 3)
    assert ff.path == paths.root / "shards" / "shard-0003" and ff.n == 4
    assert ff.families == ["temporal", "initial"]
    got, got_names = ff.per_realization()
    assert got.dtype == np.float64 and got_names == ["r0", "r1", "r2"]
    np.testing.assert_array_equal(got, per)
    assert ff.temporal_shape() == (4, 5, 2) and ff.temporal_names() == ["t0", "t1"]
    meta = ff.metadata()
    assert meta["ic_types"].tolist() == ["g", "h", "g", "h"] and meta["operator_index"].tolist() == [12, 13, 14, 15]
    assert meta["policies"].tolist() == ["r"] * 4
    x, names = ff.matrix("initial")
    assert names == ["a", "b"] and x.tolist() == [[1.0, 1.0]] * 4
    with pytest.raises(TokenizerDataError) as e:
        ff.matrix("architecture")
    assert "needs the architecture family" in str(e.value) and str(e.value).endswith("(it holds: temporal, initial)")


# ------------------------------------------------------------------------------ cleaning


@pytest.mark.parametrize("agg, m, msg", [
    ("mean", 1, "reliability not estimable: mean over M=1 realizations (needs M >= 2)"),
    ("mean", 2, "reliability not estimable: aggregate constant across operators"),
    ("std", 2, "reliability not estimable: std over M=2 realizations (needs M >= 3)"),
    ("cv", 2, "reliability not estimable: cv over M=2 realizations (needs M >= 3)"),
    ("cv", 3, "reliability not estimable: aggregate constant across operators"),
])
def test_not_estimable_reason_names_the_aggregate_and_the_realizations_needed(agg, m, msg):
    """mean needs M >= 2, std and cv M >= 3; at or above that the aggregate was constant."""
    from spinlock_core.tokenizer.cleaning import _not_estimable

    assert _not_estimable(agg, m) == msg


def _hand_spec():
    from spinlock_core.tokenizer.cleaning_spec import CleaningSpec, DroppedColumn

    inf = float("inf")
    return CleaningSpec(
        family="f", names=("a", "b", "c"), documented_nan=(False, True, False), log_scales={"a": 0.5},
        tail_statistic=(12.5, -inf, 1.0), medians=(1.0, 0.0, 0.0), mads=(0.25, 0.0, 1.0), mad_k=5.0,
        cap_low=(-0.75, -inf, -1.0), cap_high=(2.75, inf, 3.0), reliabilities=(0.9, None, 1.0),
        kept=(True, False, True), means=(1.5, 0.5), stds=(0.75, 2.0),
        dropped=(DroppedColumn("b", "variance", "variance 0 < 1e-08"),),
        settings={"heavy_tail_rule": "kurtosis", "heavy_tail_threshold": inf, "mad_k": 5.0, "min_stratum": 30,
                  "cap_within_strata": False, "realizations": None},
        n_train=10, n_diverged_excluded=1, notes=())


def test_apply_cleaning_by_hand():
    """``[N, 3] -> [N, 2]``: documented NaN -> 0, signed log with the recorded scale, the cap,
    then the kept columns z-scored with the recorded mean and std (float64)."""
    from spinlock_core.tokenizer.cleaning import apply_cleaning

    m = np.array([[0.5, np.nan, -4.0], [-0.5, 7.0, 1.0], [100.0, 2.0, 5.0], [0.0, np.nan, 0.5]], np.float32)
    out = apply_cleaning(_hand_spec(), m)
    a = np.sign(m[:, 0].astype(np.float64)) * np.log1p(np.abs(m[:, 0].astype(np.float64)) / 0.5)
    a = np.clip(a, -0.75, 2.75)
    c = np.clip(m[:, 2].astype(np.float64), -1.0, 3.0)
    assert out.dtype == np.float64 and out.shape == (4, 2)
    np.testing.assert_allclose(out[:, 0], (a - 1.5) / 0.75, rtol=1e-12)
    np.testing.assert_allclose(out[:, 1], (c - 0.5) / 2.0, rtol=1e-12)
    assert out[2, 0] == (2.75 - 1.5) / 0.75 and out[0, 1] == (-1.0 - 0.5) / 2.0
    with pytest.raises(ValueError) as e:
        apply_cleaning(_hand_spec(), m[:, :2])
    assert str(e.value) == "matrix must be [N, 3] for this spec, got shape (4, 2)"
    with pytest.raises(ValueError) as e:
        apply_cleaning(_hand_spec(), m[0])
    assert str(e.value) == "matrix must be [N, 3] for this spec, got shape (3,)"
    bad = m.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="^NaN in columns not documented to hold NaN: a$"):
        apply_cleaning(_hand_spec(), bad)


def test_tokenizer_load_builds_every_part(tmp_path, monkeypatch):
    """A loaded checkpoint: the pipeline and categories read back, the model built from
    ``init_kwargs`` with ``state_dict`` loaded, the manifest and the folder kept."""
    from spinlock_core.tokenizer import api
    from spinlock_core.tokenizer import checkpoint as ck
    from spinlock_core.tokenizer import model as model_mod

    folder, pipe, cats, fields = _io_pipeline(tmp_path)
    (folder / ck.METRICS).write_text("{}")
    (folder / ck.HISTORY).write_text("{}")
    manifest = {"format": ck.FORMAT, "version": ck.VERSION, **fields, "codebook_sizes": [3, 2, 2] * 2}
    (folder / ck.MANIFEST).write_text(json.dumps(manifest))
    torch.save({"init_kwargs": {"width": 3}, "state_dict": {"w": torch.arange(3.0)}}, folder / ck.MODEL)
    built = []

    class Net(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(width))
            built.append(self)

    monkeypatch.setattr(model_mod, "CategoricalVQVAE", Net)
    tok = api.Tokenizer.load(str(folder), verify=False)
    assert tok.folder == folder and isinstance(tok.folder, Path)
    assert tok.model is built[0] and tok.model.w.tolist() == [0.0, 1.0, 2.0] and not tok.model.training
    assert tok.manifest == manifest and tok.codebook_sizes == [3, 2, 2, 3, 2, 2]
    assert tok.pipeline.names == pipe.names and [s.name for s in tok.pipeline.families] == ["summary", "temporal"]
    assert tok.categories.to_json() == cats.to_json() and tok.num_categories == 2


def test_feature_file_reads_the_experiment_config(tmp_path, tiny_config):
    """The ``config`` attribute (JSON) is read back as the ExperimentConfig it records."""
    p = _file(tmp_path / "c.h5", attrs={"config": tiny_config.model_dump_json()})
    assert FeatureFile(p).experiment_config() == tiny_config
