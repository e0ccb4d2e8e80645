"""Pinning tests for tokenizer parts: the checkpoint writer (files, manifest, checkpoint id), the
fitted cleaning's record (settings, statistics, reasons), the cleaning spec's strict JSON, the
column helpers' bounds and messages, the dataset reader (identity, unknown families, temporal
chunks and the reads they make), the streaming encoder, dead-code re-seeding and the split.

Every expected value is computed here by hand or by an independent numpy re-implementation."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from spinlock_core.storage.layout import LAYOUT_VERSION, PATHS
from spinlock_core.tokenizer import checkpoint as ck
from spinlock_core.tokenizer import data as data_mod
from spinlock_core.tokenizer.api import Tokenizer
from spinlock_core.tokenizer.categories import Categories
from spinlock_core.tokenizer.cleaning import fit_cleaning
from spinlock_core.tokenizer.cleaning_spec import CleaningSpec, DroppedColumn
from spinlock_core.tokenizer.column_transforms import apply_zscore, cap_bounds
from spinlock_core.tokenizer.data import FeatureFile, TokenizerDataError
from spinlock_core.tokenizer.encoders.encode import encode_chunks
from spinlock_core.tokenizer.encoders.identity import IdentityEncoder
from spinlock_core.tokenizer.model import CategoricalVQVAE
from spinlock_core.tokenizer.pipeline import FamilyStage, FeaturePipeline
from spinlock_core.tokenizer.split import validation_mask

INF = float("inf")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- Tokenizer.save


def _tiny_tokenizer(pretrain=None, codebook_sizes=None) -> Tokenizer:
    rng = np.random.default_rng(0)
    spec = fit_cleaning(rng.normal(size=(20, 3)), ["p", "q", "r"], family="initial", heavy_tail_rule="none")
    stage = FamilyStage(name="initial", encoder_name="identity", cleaning=spec, encoder=IdentityEncoder(3),
                        output_names=["p", "q", "r"], pretrain=pretrain)
    pipe = FeaturePipeline(families=[stage], names=["p", "q", "r"], column_family=["initial"] * 3,
                           mean=np.array([0.5, -1.25, 2.0], np.float32), std=np.array([1.0, 0.25, 4.0], np.float32),
                           dropped=[("initial", "z", "constant")], keep=np.array([0, 1, 2]),
                           reliabilities=np.array([1.0, 0.75, 1.0]))
    cats = Categories(names=("p", "q", "r"), assignment=np.array([0, 0, 1]), requested_num_categories=2,
                      num_clusters_cut=2, min_size=1, silhouette_k=(), silhouette=(), silhouette_final=0.5,
                      orthogonality=0.125)
    torch.manual_seed(0)
    model = CategoricalVQVAE(assignment=[0, 0, 1], codebook_sizes=[[2, 2, 2], [2, 2, 2]], embedding_dim=2,
                             hidden_dim=2, decoder_hidden_dims=[], kmeans_init=False)
    manifest = {"format": ck.FORMAT, "version": ck.VERSION,
                "codebook_sizes": codebook_sizes or [2, 2, 2, 2, 2, 2]}
    return Tokenizer(pipe, cats, model, manifest)


def _pipeline_fields(pretrain) -> dict:
    """The manifest's pipeline fields of :func:`_tiny_tokenizer`, written out by hand."""
    return {
        "families": [{"name": "initial", "encoder": "identity", "blocks": [], "states": None,
                      "output_names": ["p", "q", "r"], "input_columns": ["p", "q", "r"], "pretrain": pretrain}],
        "names": ["p", "q", "r"], "column_family": ["initial"] * 3, "keep": [0, 1, 2],
        "mean": [0.5, -1.25, 2.0], "std": [1.0, 0.25, 4.0], "reliabilities": [1.0, 0.75, 1.0],
        "dropped": [["initial", "z", "constant"]],
    }


def _expected_id(folder, files: dict, fields: dict) -> str:
    """checkpoint id = sha256 over sorted "name:sha\\n" of the deciding files plus the pipeline hash
    (fields without ``pretrain``, with the codebook sizes, keys sorted)."""
    decisive = {k: v for k, v in files.items() if k not in ("metrics.json", "training_history.json")}
    decisive["pipeline"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(decisive.items())).encode()).hexdigest()


def test_save_writes_every_file_hashes_and_the_checkpoint_id(tmp_path, caplog):
    tok = _tiny_tokenizer(pretrain={"epochs": 3})
    metrics, history = {"loss": 0.5, "per": [1, 2]}, {"rounds": [{"step": 1}]}
    with caplog.at_level(logging.INFO, logger="spinlock_core.tokenizer.api"):
        folder = tok.save(tmp_path / "ckpt", metrics=metrics, history=history)
    assert folder == (tmp_path / "ckpt").resolve() and tok.folder == folder
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert on_disk == ["categories.json", "cleaning/initial.json", "encoders/initial.pt", "metrics.json",
                       "model.pt", "tokenizer.json", "training_history.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left
    # metrics and history: exact strict JSON with indent 1
    assert (folder / "metrics.json").read_text() == json.dumps(metrics, indent=1)
    assert (folder / "training_history.json").read_text() == json.dumps(history, indent=1)
    # the model file rebuilds the model
    state = torch.load(folder / "model.pt", weights_only=True)
    assert set(state) == {"init_kwargs", "state_dict"}
    assert state["init_kwargs"] == tok.model.init_kwargs
    ref = tok.model.state_dict()
    assert set(state["state_dict"]) == set(ref)
    for k, v in ref.items():
        assert torch.equal(state["state_dict"][k], v.cpu())
    # the manifest: the given keys, the pipeline fields, every other file's sha256, the id
    files = {name: _sha(folder / name) for name in on_disk if name != "tokenizer.json"}
    fields = _pipeline_fields({"epochs": 3})
    id_fields = {**fields, "families": [{k: v for k, v in fields["families"][0].items() if k != "pretrain"}],
                 "codebook_sizes": [2, 2, 2, 2, 2, 2]}
    cid = _expected_id(folder, files, id_fields)
    expected = {"format": ck.FORMAT, "version": ck.VERSION, "codebook_sizes": [2, 2, 2, 2, 2, 2], **fields,
                "files": files, "checkpoint_id": cid}
    assert (folder / "tokenizer.json").read_text() == json.dumps(expected, indent=1)
    assert tok.manifest == expected and tok.checkpoint_id == cid
    msgs = [r.getMessage() for r in caplog.records if r.name == "spinlock_core.tokenizer.api"]
    assert msgs == [f"tokenizer checkpoint {cid[:12]} written to {folder}"]
    # and the folder loads back, verified against those hashes
    back = Tokenizer.load(folder)
    assert back.checkpoint_id == cid and back.codebook_sizes == [2] * 6


def test_checkpoint_id_ignores_pretrain_metrics_history_but_not_codebook_sizes(tmp_path):
    a = _tiny_tokenizer(pretrain={"epochs": 3})
    a.save(tmp_path / "a", metrics={"m": 1}, history={"h": 1})
    b = _tiny_tokenizer(pretrain={"epochs": 99})
    b.save(tmp_path / "b", metrics={"m": 2}, history={"h": 2})
    assert a.checkpoint_id == b.checkpoint_id
    assert a.manifest["families"][0]["pretrain"] == {"epochs": 3}  # recorded, not decisive
    c = _tiny_tokenizer(pretrain={"epochs": 3}, codebook_sizes=[2, 2, 2, 2, 2, 3])
    c.save(tmp_path / "c", metrics={"m": 1}, history={"h": 1})
    assert c.checkpoint_id != a.checkpoint_id
    assert a.manifest["files"] == c.manifest["files"]  # only the pipeline field differs


@pytest.mark.parametrize("where", ["metrics", "history", "manifest"])
def test_save_refuses_nan_in_every_json_file_and_writes_nothing(tmp_path, where):
    tok = _tiny_tokenizer()
    metrics, history = {"m": 1.0}, {"h": 1.0}
    if where == "metrics":
        metrics["m"] = float("nan")
    elif where == "history":
        history["h"] = float("inf")
    else:
        tok.manifest["note"] = float("nan")
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        tok.save(tmp_path / "ckpt", metrics=metrics, history=history)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- fit_cleaning


def _cleaning_data():
    rng = np.random.default_rng(11)
    n = 14
    a = rng.uniform(0, 10, n)
    b, c = rng.normal(size=n), rng.normal(size=n)
    h = 0.1 * rng.normal(size=n)
    h[4] = 50.0  # one outlier in the training rows: heavy-tailed
    x = np.column_stack([a, np.full(n, 3.0), 2 * a + 1, b, c, h, b - 3 * c + 0.5])
    names = ["a", "k", "d", "b", "c", "h", "s"]
    train = np.ones(n, dtype=bool)
    train[13] = False
    diverged = np.zeros(n, dtype=bool)
    diverged[[0, 13]] = True  # row 0: training split but diverged; row 13: outside the split
    return x, names, train, diverged


def test_fit_cleaning_records_settings_statistics_and_reasons():
    x, names, train, diverged = _cleaning_data()
    spec = fit_cleaning(x, names, train_mask=train, diverged=diverged, family="fam", heavy_tail_rule="kurtosis",
                        heavy_tail_threshold=5, mad_k=4, variance_floor=1e-6, min_reliability=0.5,
                        duplicate_threshold=0.995, min_stratum=3, duplicate_require="any", linear_tol=1e-7)
    assert spec.settings == {
        "heavy_tail_rule": "kurtosis", "heavy_tail_threshold": 5.0, "mad_k": 4.0, "cap_within_strata": False,
        "variance_floor": 1e-6, "min_reliability": 0.5, "duplicate_threshold": 0.995, "min_stratum": 3,
        "duplicate_require": "any", "linear_tol": 1e-7, "realizations": None,
    }
    for k in ("heavy_tail_threshold", "mad_k", "variance_floor", "min_reliability", "duplicate_threshold",
              "linear_tol"):
        assert type(spec.settings[k]) is float, k
    assert type(spec.settings["min_stratum"]) is int and type(spec.settings["cap_within_strata"]) is bool
    assert spec.family == "fam" and spec.names == tuple(names) and spec.documented_nan == (False,) * 7
    assert spec.n_train == 12 and spec.n_diverged_excluded == 1 and type(spec.mad_k) is float and spec.mad_k == 4.0

    # independent re-implementation of steps 1-4 on the 12 training rows
    rows = train & ~diverged
    xt = x[rows]
    d = xt - xt.mean(0)
    m2, m4 = (d**2).mean(0), (d**4).mean(0)
    kurt = np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1) ** 2 - 3, 0.0)
    np.testing.assert_allclose(spec.tail_statistic, kurt, rtol=1e-12, atol=1e-12)
    assert [names[i] for i in np.flatnonzero(kurt > 5)] == ["h"]
    s_h = float(np.median(np.abs(xt[:, 5])))
    assert spec.log_scales == pytest.approx({"h": s_h}, rel=1e-15)
    x1 = x.copy()
    x1[:, 5] = np.sign(x[:, 5]) * np.log1p(np.abs(x[:, 5]) / s_h)
    med = np.median(x1[rows], axis=0)
    mad = np.median(np.abs(x1[rows] - med), axis=0)
    np.testing.assert_allclose(spec.medians, med, rtol=1e-14)
    np.testing.assert_allclose(spec.mads, mad, rtol=1e-14)
    half = 4 * 1.4826 * mad
    lo, hi = np.where(mad > 0, med - half, -np.inf), np.where(mad > 0, med + half, np.inf)
    np.testing.assert_allclose(spec.cap_low, lo, rtol=1e-14)
    np.testing.assert_allclose(spec.cap_high, hi, rtol=1e-14)
    assert spec.cap_low[1] == -INF and spec.cap_high[1] == INF  # constant column: MAD 0, uncapped
    x2 = np.clip(x1, lo, hi)[rows]

    # steps 5-9: k (constant) by variance, d = 2a + 1 by duplicate, s = b - 3c + 0.5 by combination
    assert spec.kept == (True, False, False, True, True, True, False)
    assert spec.reliabilities == (1.0, None, 1.0, 1.0, 1.0, 1.0, 1.0)
    kept = np.array(spec.kept)
    np.testing.assert_allclose(spec.means, x2[:, kept].mean(0), rtol=1e-13)
    np.testing.assert_allclose(spec.stds, x2[:, kept].std(0), rtol=1e-13)
    assert [(dc.name, dc.step) for dc in spec.dropped] == [("k", "variance"), ("d", "duplicate"),
                                                           ("s", "linear_combination")]
    assert spec.dropped[0].reason == "variance 0 < 1e-06 on the training rows"
    assert spec.dropped[1].reason == "|r| = 1.00000 > 0.995 with a in stratum '0'"
    assert spec.dropped[2].reason.startswith("exact linear combination of kept columns (relative residual ")
    assert spec.dropped[2].reason.endswith("<= 1e-07): s = 0.5 - 3*c + 1*b")
    assert spec.notes == ("uncapped (MAD 0): ['k']",)


def test_fit_cleaning_records_the_number_of_realizations():
    rng = np.random.default_rng(2)
    pr = rng.normal(size=(12, 4, 2)) + rng.normal(size=(12, 1, 2)) * 5
    x = pr.mean(1)
    spec = fit_cleaning(x, ["u_mean", "v_mean"], per_realization=pr, per_realization_names=["u", "v"],
                        heavy_tail_rule="none", min_stratum=3)
    assert spec.settings["realizations"] == 4 and type(spec.settings["realizations"]) is int


# ----------------------------------------------------------------------------- CleaningSpec.to_json


def _spec(**over) -> CleaningSpec:
    args = dict(
        family="f", names=("a", "b"), documented_nan=(False, True), log_scales={"a": 0.5},
        tail_statistic=(12.5, -INF), medians=(1.0, 0.0), mads=(0.25, 0.0), mad_k=5.0,
        cap_low=(-0.75, -INF), cap_high=(2.75, INF), reliabilities=(0.9, None), kept=(True, False),
        means=(1.5,), stds=(0.75,), dropped=(DroppedColumn("b", "variance", "variance 0 < 1e-08"),),
        settings={"heavy_tail_rule": "kurtosis", "heavy_tail_threshold": INF, "mad_k": 5.0, "min_stratum": 30,
                  "cap_within_strata": False, "realizations": None},
        n_train=10, n_diverged_excluded=1, notes=("uncapped (MAD 0): ['b']",),
    )
    args.update(over)
    return CleaningSpec(**args)


def test_cleaning_spec_json_is_strict_with_infinities_as_strings():
    spec = _spec()
    text = spec.to_json()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {
        "family": "f", "names": ["a", "b"], "documented_nan": [False, True], "log_scales": {"a": 0.5},
        "tail_statistic": [12.5, "-inf"], "medians": [1.0, 0.0], "mads": [0.25, 0.0], "mad_k": 5.0,
        "cap_low": [-0.75, "-inf"], "cap_high": [2.75, "inf"], "reliabilities": [0.9, None],
        "kept": [True, False], "means": [1.5], "stds": [0.75],
        "dropped": [{"name": "b", "step": "variance", "reason": "variance 0 < 1e-08"}],
        "settings": {"heavy_tail_rule": "kurtosis", "heavy_tail_threshold": "inf", "mad_k": 5.0,
                     "min_stratum": 30, "cap_within_strata": False, "realizations": None},
        "n_train": 10, "n_diverged_excluded": 1, "notes": ["uncapped (MAD 0): ['b']"], "version": "1.0",
    }
    assert CleaningSpec.from_json(text) == spec


@pytest.mark.parametrize("over", [{"log_scales": {"a": float("nan")}}, {"mad_k": INF}])
def test_cleaning_spec_json_refuses_non_finite_values_it_does_not_encode(over):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _spec(**over).to_json()


# ----------------------------------------------------------------------------- column helpers


def test_cap_bounds_values_and_messages():
    lo, hi = cap_bounds([1.0, -2.0, 3.0], [0.5, 0.0, 2.0], 0.5)
    np.testing.assert_allclose(lo, [1 - 0.5 * 1.4826 * 0.5, -np.inf, 3 - 0.5 * 1.4826 * 2], rtol=1e-15)
    np.testing.assert_allclose(hi, [1 + 0.5 * 1.4826 * 0.5, np.inf, 3 + 0.5 * 1.4826 * 2], rtol=1e-15)
    lo, hi = cap_bounds(np.array([2.0]), np.array([1.0]))  # default k = 5
    assert lo.tolist() == [2 - 5 * 1.4826] and hi.tolist() == [2 + 5 * 1.4826]
    for k in (0, -1.0, INF, float("nan")):
        with pytest.raises(ValueError, match=rf"k must be finite and > 0, got {k}"):
            cap_bounds([1.0], [1.0], k)
    with pytest.raises(ValueError, match="MAD cannot be negative"):
        cap_bounds([1.0, 1.0], [0.5, -0.1])
    with pytest.raises(ValueError, match=r"median and mad must be \[F\] vectors of one shape, got \(2,\) and \(3,\)"):
        cap_bounds([1.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"median and mad must be \[F\] vectors of one shape, got \(1, 2\) and \(1, 2\)"):
        cap_bounds([[1.0, 2.0]], [[1.0, 1.0]])


def test_apply_zscore_values_and_messages():
    out = apply_zscore([[1.0, 2.0], [3.0, 6.0], [-1.0, 0.0]], [1.0, 2.0], [2.0, 0.5])
    np.testing.assert_array_equal(out, [[0.0, 0.0], [1.0, 8.0], [-1.0, -4.0]])
    with pytest.raises(ValueError, match=r"^mean must have shape \(2,\), got \(3,\)$"):
        apply_zscore(np.ones((2, 2)), [1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^std must have shape \(2,\), got \(1,\)$"):
        apply_zscore(np.ones((2, 2)), [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"^std must be > 0 in every column$"):
        apply_zscore(np.ones((2, 2)), [1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"x must be a 2-D \[N, F\] matrix, got shape \(3,\)"):
        apply_zscore(np.ones(3), [1.0], [1.0])


# ----------------------------------------------------------------------------- FeatureFile


def _h5(path, *, temporal=None, attrs=None, n=6):
    with h5py.File(path, "w") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.create_dataset(PATHS.DIVERGED, data=np.zeros(n, dtype=bool))
        if temporal is not None:
            f.create_dataset(PATHS.TEMPORAL, data=temporal)
    return path


def test_identity_reads_every_attribute(tmp_path):
    p = _h5(tmp_path / "a.h5", attrs={"experiment": "exp1", "config_fingerprint": np.bytes_(b"cfp"),
                                      "stage_fingerprint": "sfp", "other": "x"})
    assert FeatureFile(p).identity() == {"path": str(p), "n": 6, "experiment": "exp1", "config_fingerprint": "cfp",
                                         "stage_fingerprint": "sfp"}
    q = _h5(tmp_path / "b.h5", attrs={"stage_fingerprint": 7}, n=3)
    assert FeatureFile(q).identity() == {"path": str(q), "n": 3, "experiment": None, "config_fingerprint": None,
                                         "stage_fingerprint": "7"}


def test_unknown_and_missing_families_are_named(tmp_path):
    temporal = np.zeros((6, 4, 3))
    ff = FeatureFile(_h5(tmp_path / "t.h5", temporal=temporal))
    with pytest.raises(TokenizerDataError,
                       match=r"^unknown feature family 'bogus'; known: \['architecture', 'initial', 'summary', 'temporal'\]$"):
        ff.matrix("bogus")
    with pytest.raises(TokenizerDataError, match=r"t\.h5: the tokenizer needs the initial family "
                                                  r"\(features/initial/features\), which this dataset does not hold "
                                                  r"\(it holds: temporal\)$"):
        ff.matrix("initial")
    empty = FeatureFile(_h5(tmp_path / "e.h5"))
    with pytest.raises(TokenizerDataError, match=r"needs the temporal family \(features/temporal/features\), "
                                                  r"which this dataset does not hold \(it holds: no feature family\)$"):
        empty.temporal_shape()


class _SpyDataset:
    def __init__(self, ds, log):
        self._ds, self._log = ds, log

    @property
    def shape(self):
        return self._ds.shape

    def __getitem__(self, key):
        self._log.append(key)
        return self._ds[key]


class _SpyFile:
    def __init__(self, f, log):
        self._f, self._log = f, log

    @property
    def attrs(self):
        return self._f.attrs

    def __contains__(self, k):
        return k in self._f

    def __getitem__(self, k):
        return _SpyDataset(self._f[k], self._log) if k == PATHS.TEMPORAL else self._f[k]


@pytest.fixture
def temporal_file(tmp_path, monkeypatch):
    """A 6-operator file with TEMPORAL [6, 4, 3] float64 (values 100 n + 10 t + f) and a log of
    every read of that dataset."""
    full = (100 * np.arange(6)[:, None, None] + 10 * np.arange(4)[None, :, None]
            + np.arange(3)[None, None, :]).astype(np.float64) + 0.5
    ff = FeatureFile(_h5(tmp_path / "t.h5", temporal=full))
    reads: list = []
    real = data_mod.open_h5

    @contextmanager
    def spy(path):
        with real(path) as f:
            yield _SpyFile(f, reads)

    monkeypatch.setattr(data_mod, "open_h5", spy)
    return ff, full, reads


def test_temporal_chunks_values_and_reads(temporal_file):
    ff, full, reads = temporal_file
    out = list(ff.temporal_chunks(chunk=4))  # default states 1:
    assert [p.tolist() for p, _ in out] == [[0, 1, 2, 3], [4, 5]]
    for part, x in out:
        assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"] and part.dtype == np.int64
        np.testing.assert_array_equal(x, full[part][:, 1:].astype(np.float32))
    assert reads == [slice(0, 4), slice(4, 6)]  # dense: one contiguous read per chunk

    reads.clear()
    (part, x), = ff.temporal_chunks(states=slice(0, None, 2), rows=np.array([0, 3], dtype=np.int32))
    assert part.dtype == np.int64 and part.tolist() == [0, 3]
    np.testing.assert_array_equal(x, full[[0, 3]][:, ::2])
    assert reads == [slice(0, 4)]  # span 4 == 2 x 2 rows: still one contiguous read of exactly the span

    reads.clear()
    (part, x), = ff.temporal_chunks(states=slice(3, None), rows=[0, 5])  # one state selected
    np.testing.assert_array_equal(x, full[[0, 5]][:, 3:])
    assert x.shape == (2, 1, 3) and reads == [[0, 5]]  # span 6 > 2 x 2: point selection

    reads.clear()
    got = list(ff.temporal_chunks(chunk=1, rows=[1, 2]))
    assert [p.tolist() for p, _ in got] == [[1], [2]] and reads == [slice(1, 2), slice(2, 3)]
    assert list(ff.temporal_chunks(rows=np.array([], dtype=np.int64))) == []


@pytest.mark.parametrize("rows", [[2, 1], [1, 1], [-1, 2], [0, 1, 6], [6], [0, 7]])
def test_temporal_chunks_refuse_rows_outside_or_unsorted(temporal_file, rows):
    ff, _, _ = temporal_file
    with pytest.raises(TokenizerDataError, match=r"^rows must be sorted, unique and inside \[0, 6\)$"):
        list(ff.temporal_chunks(rows=np.array(rows)))


def test_temporal_chunks_refuse_bad_chunk_and_empty_states(temporal_file):
    ff, _, _ = temporal_file
    with pytest.raises(TokenizerDataError, match=r"^chunk must be >= 1, got 0$"):
        list(ff.temporal_chunks(chunk=0))
    with pytest.raises(TokenizerDataError, match=r"^states slice\(4, None, None\) select no state of T = 4$"):
        list(ff.temporal_chunks(states=slice(4, None)))


# ----------------------------------------------------------------------------- encode_chunks


class Spy(nn.Module):
    """``[B, 3] -> [B, 2]``: ``2 x[:, :2] + x[:, 2:]``; records moves, batches, mode and inference mode."""

    output_dim = 2

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))
        self.moves, self.batches, self.modes = [], [], []

    def to(self, *args, **kwargs):
        self.moves.append(args)
        return super().to(*args, **kwargs)

    def forward(self, x):
        self.batches.append(tuple(x.shape))
        self.modes.append((self.training, torch.is_inference_mode_enabled(), x.dtype))
        return (self.w * x[:, :2] + x[:, 2:]).double()


def test_encode_chunks_moves_batches_and_concatenates_in_order():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(1030, 3))
    enc = Spy().train()
    out = encode_chunks(enc, [big])
    assert enc.moves == [(torch.device("cpu"),)] and not enc.training
    assert enc.batches == [(1024, 3), (6, 3)]  # default batch size 1024
    assert set(enc.modes) == {(False, True, torch.float32)}
    b32 = big.astype(np.float32)
    ref = 2 * b32[:, :2] + b32[:, 2:]
    assert out.dtype == np.float32 and out.shape == (1030, 2)
    np.testing.assert_allclose(out, ref, rtol=1e-6)

    parts = [rng.normal(size=(3, 3)), rng.normal(size=(2, 3))]
    enc = Spy()
    out = encode_chunks(enc, lambda: iter(parts), batch_size=1)
    assert enc.batches == [(1, 3)] * 5
    cat = np.concatenate(parts).astype(np.float32)
    np.testing.assert_allclose(out, 2 * cat[:, :2] + cat[:, 2:], rtol=1e-6)

    empty = encode_chunks(Spy(), [])
    assert empty.shape == (0, 2) and empty.dtype == np.float32


def test_encode_chunks_messages():
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        encode_chunks(Spy(), [np.zeros((1, 3))], batch_size=0)
    bad = np.zeros((2, 3))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"^encode_chunks\(Spy\): a chunk of shape \(2, 3\) holds 1 non-finite values$"):
        encode_chunks(Spy(), [bad])


# ----------------------------------------------------------------------------- reseed_codes


def _reseed_model(**kw):
    torch.manual_seed(3)
    args = dict(assignment=[0, 1, 0, 1], codebook_sizes=[[3, 2, 2], [2, 3, 2]], embedding_dim=5, hidden_dim=4,
                decoder_hidden_dims=[], kmeans_init=False, threshold_ema_dead_code=2.0)
    args.update(kw)
    return CategoricalVQVAE(**args)


def test_reseed_codes_draws_rows_per_level_and_counts_every_code():
    model = _reseed_model().eval()
    x = np.random.default_rng(4).normal(size=(2, 4)).astype(np.float32)  # B = 2 rows, D = 5
    # token columns: sizes [3, 2, 2 | 2, 3, 2] at offsets [0, 3, 5 | 7, 9, 12], 14 in all
    dead = np.zeros(14, dtype=bool)
    dead[[0, 1, 2]] = True  # category 0, level 0: 3 codes > 2 rows: 2 of them now
    dead[[10]] = True  # category 1, level 1: code 1
    dead[[12, 13]] = True  # category 1, level 2: both codes (= B rows)
    books = [[vq._codebook for vq in cat.rvq.layers] for cat in model.categories]
    before = [[b.embed.detach().clone() for b in bs] for bs in books]

    n = model.reseed_codes(x, dead, generator=torch.Generator().manual_seed(7))
    assert n == 2 + 1 + 2 and model.reset_cluster_size == 2.0

    # the same draws, replayed: (category, level) in order, codes chosen only when more than B
    g = torch.Generator().manual_seed(7)
    xt = torch.from_numpy(x)
    cols = [[0, 2], [1, 3]]
    plan = {(0, 0): [0, 1, 2], (1, 1): [1], (1, 2): [0, 1]}
    with torch.no_grad():
        for c, cat in enumerate(model.categories):
            residual = cat.encoder(xt[:, cols[c]])
            for lv, vq in enumerate(cat.rvq.layers):
                book = vq._codebook
                chosen = torch.tensor([], dtype=torch.long)
                if (c, lv) in plan:
                    idx = torch.tensor(plan[(c, lv)])
                    if idx.numel() > 2:
                        idx = idx[torch.randperm(idx.numel(), generator=g)[:2]]
                    rows = torch.randperm(2, generator=g)[:idx.numel()]
                    torch.testing.assert_close(book.embed[0, idx], residual[rows])
                    torch.testing.assert_close(book.embed_avg[0, idx], residual[rows] * 2.0)
                    assert book.cluster_size[0, idx].tolist() == [2.0] * idx.numel()
                    chosen = idx
                untouched = [i for i in range(book.embed.shape[1]) if i not in chosen.tolist()]
                assert torch.equal(book.embed[0, untouched], before[c][lv][0, untouched])
                q, _, _ = vq(residual)
                residual = residual - q


def test_reseed_codes_messages():
    model = _reseed_model()
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^dead must be a \[14\] bool mask \(all codebooks\), got shape \(13,\)$"):
        model.reseed_codes(x, np.zeros(13, dtype=bool))
    plain = _reseed_model(quantize=False)
    with pytest.raises(ValueError, match=r"^reseed_codes needs quantizers; this model was built with quantize=False$"):
        plain.reseed_codes(x, np.zeros(14, dtype=bool))


# ----------------------------------------------------------------------------- validation_mask


def _keys(idx, seed):
    """The split key of each operator, from numpy's SeedSequence directly ("split" is stage 8)."""
    return np.array([np.random.SeedSequence([seed, 8, int(i)]).generate_state(1, dtype=np.uint64)[0] / 2.0**64
                     for i in idx])


@pytest.mark.parametrize("fraction, n_val", [(0.4, 2), (0.01, 1), (0.99, 4), (0.7, 4)])
def test_validation_mask_takes_the_smallest_keys(fraction, n_val):
    idx = np.array([10, 3, 7, 42, 5])
    mask = validation_mask(idx, fraction, seed=3)
    assert mask.dtype == np.bool_ and mask.shape == (5,)
    expected = np.zeros(5, dtype=bool)
    expected[np.argsort(_keys(idx, 3))[:n_val]] = True
    assert mask.tolist() == expected.tolist() and mask.sum() == n_val


def test_validation_mask_round_and_bounds():
    idx = np.arange(10)
    mask = validation_mask(idx, 0.7, seed=0)
    expected = np.zeros(10, dtype=bool)
    expected[np.argsort(_keys(idx, 0))[:7]] = True
    assert mask.tolist() == expected.tolist()
    two = validation_mask([4, 9], 0.5, seed=1)
    assert two.tolist() == (_keys([4, 9], 1) == _keys([4, 9], 1).min()).tolist()


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.25])
def test_validation_mask_messages(fraction):
    with pytest.raises(ValueError, match=rf"^validation fraction must lie in \(0, 1\), got {fraction}$"):
        validation_mask([0, 1, 2], fraction, seed=0)


def test_validation_mask_needs_two_operators():
    with pytest.raises(ValueError, match=r"^a train/validation split needs at least 2 operators, got 1$"):
        validation_mask([3], 0.5, seed=0)
