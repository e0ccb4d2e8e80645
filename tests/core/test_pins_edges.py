"""Pins of edges the sampled mutation run found unpinned (issue #11): constant columns of a
single-realization experiment, the digest-mismatch message, the checkpoint's required files, the
tokenizer's input and encoder messages, the MLP encoder's batch norm, the category cut warning and
the Owen scrambling's clamp of points outside [0, 1)."""

from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
from torch import nn

from spinlock_core.config import load_experiment
from spinlock_core.features.families import documented_constant
from spinlock_core.features.summary import AGGREGATED_NAMES, SUMMARY_NAMES
from spinlock_core.sampling.sobol import owen_scramble
from spinlock_core.storage.integrity import ATTR_DIGESTS, _verify_datasets, array_digest
from spinlock_core.storage.layout import PATHS


def test_one_realization_excuses_every_std_and_cv_summary_column(write_config):
    one = documented_constant(PATHS.SUMMARY_AGG, load_experiment(write_config(simulation__num_realizations=1)))
    # with M = 1 the spread over realizations is zero by construction for every summary column
    spread = {f"{n}_{s}" for n in SUMMARY_NAMES for s in ("std", "cv")}
    assert spread <= one and spread <= set(AGGREGATED_NAMES)
    many = documented_constant(PATHS.SUMMARY_AGG, load_experiment(write_config(simulation__num_realizations=2)))
    assert {"output_input_corr_std", "output_input_corr_cv"} <= many and not spread <= many
    assert one - many == spread - many  # the single realization adds exactly the spread columns


def test_digest_mismatch_names_both_16_digit_prefixes(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    stored = "0123456789abcdef" + "f" * 48
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = x
        f.attrs[ATTR_DIGESTS] = json.dumps({"x": stored})
    with h5py.File(tmp_path / "f.h5", "r") as f:
        problems = _verify_datasets(f, ["x"])
    read = array_digest(x)
    assert problems == [f"x: content does not match its SHA-256 digest (stored 0123456789abcdef, read {read[:16]}): "
                        "corrupt data; re-materialize it"]


def test_array_features_and_activation_messages():
    from spinlock_core.tokenizer.data import ArrayFeatures, TokenizerDataError
    from spinlock_core.tokenizer.encoders.mlp import ACTIVATIONS, _activation

    with pytest.raises(TokenizerDataError, match="^no feature arrays given$"):
        ArrayFeatures({})
    known = ", ".join(ACTIVATIONS)
    assert known.count(", ") == len(ACTIVATIONS) - 1 >= 1
    with pytest.raises(ValueError, match=rf"^unknown activation 'swish'; known: {known}$"):
        _activation("swish")


def test_mlp_hidden_layers_with_batch_norm():
    from spinlock_core.tokenizer.encoders.mlp import _mlp

    net = _mlp([5, 4, 3, 2], "relu", 0.0, True)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [m.num_features for m in net if isinstance(m, nn.BatchNorm1d)] == [4, 3]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(5, 4), (4, 3), (3, 2)]
    plain = _mlp([5, 4, 2], "relu", 0.25, False)
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear] and plain[2].p == 0.25


def test_category_cut_with_all_clusters_does_not_warn():
    from spinlock_core.tokenizer.categories import discover_categories

    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal((3, 200))
    noise = 0.05 * rng.standard_normal((200, 6))
    x = np.stack([a, a, b, b, c, c], 1) + noise  # three clear pairs: the cut gives the 3 asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cats = discover_categories(x, [f"c{j}" for j in range(6)], 3, min_size=2)
    assert cats.num_clusters_cut == 3 and sorted(cats.sizes) == [2, 2, 2]


def test_owen_scramble_clamps_points_outside_the_unit_cube_to_the_edge_cells():
    seed = 7
    inside = owen_scramble(np.array([[0.0, 1.0 - 2.0**-32]]), np.random.default_rng(seed))
    outside = owen_scramble(np.array([[-0.25, 1.5]]), np.random.default_rng(seed))
    assert np.array_equal(inside, outside)


def test_loading_a_checkpoint_needs_every_required_file(tmp_path):
    """Every file of ``checkpoint.REQUIRED`` but the manifest is checked by name (the manifest is
    read first)."""
    from spinlock_core.tokenizer import checkpoint as ck
    from spinlock_core.tokenizer.api import Tokenizer

    assert ck.REQUIRED[0] == ck.MANIFEST and len(ck.REQUIRED) == 5
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / ck.MANIFEST).write_text(json.dumps({"format": ck.FORMAT, "version": ck.VERSION}))
    for name in ck.REQUIRED[1:]:
        (folder / name).write_text("{}")
    for missing in ck.REQUIRED[1:]:
        case = tmp_path / f"without_{missing.replace('/', '_')}"
        shutil.copytree(folder, case)
        (case / missing).unlink()
        with pytest.raises(ck.CheckpointError, match=f"missing checkpoint file {missing}$"):
            Tokenizer.load(case, verify=False)
