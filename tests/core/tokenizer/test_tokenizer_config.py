"""Tokenizer configs (``configs/vqvae/``): the shipped files validate, every problem of a file is
reported in one run with its path, experiments name their tokenizer config, `spinlock validate`.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from spinlock_core.config import (
    ConfigError,
    ExperimentConfig,
    TokenizerConfig,
    load_config,
    load_experiment,
    load_tokenizer_config,
)
from spinlock_core.config.loading import REPO_ROOT, config_kind
from spinlock_core.config.tokenizer import (
    FAMILY_NAMES,
    MLPParams,
    PooledIdentityParams,
    PretrainConfig,
    VQModelConfig,
    auto_codebook_sizes,
)
from tests.conftest import ROOT, tiny_dict

PRODUCTION = ROOT / "configs/vqvae/production.yaml"
DEMO = ROOT / "configs/vqvae/demo.yaml"

#: a small valid tokenizer config; tests override parts of it
BASE = {
    "families": {
        "summary": {"encoder": "IdentityEncoder"},
        "temporal": {"encoder": "TemporalCNNEncoder", "encoder_params": {"embedding_dim": 8}},
        "architecture": {"encoder": "IdentityEncoder"},
    },
    "model": {"group_embedding_dim": 16, "group_hidden_dim": 32, "threshold_ema_dead_code": 0.25},
    "training": {"batch_size": 64, "max_steps": 200, "val_every_steps": 20, "dead_code_reset_interval": 50,
                 "device": "cpu"},
}


def _data(**over) -> dict:
    """``BASE`` with dotted-path overrides (``"model.levels": [8, 4, 4]``); the value ``DEL`` removes."""
    d = copy.deepcopy(BASE)
    for dotted, value in over.items():
        node = d
        *parts, last = dotted.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        if value is DEL:
            node.pop(last, None)
        else:
            node[last] = value
    return d


DEL = object()


@pytest.fixture
def write_tokenizer(tmp_path):
    def write(data: dict | None = None, name: str = "tok.yaml", **over) -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data if data is not None else _data(**over), sort_keys=False))
        return p

    return write


def _problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as ei:
        load_tokenizer_config(path)
    assert "Traceback" not in str(ei.value)
    assert str(ei.value).splitlines() == [f"{path}: {loc}: {msg}" for loc, msg in ei.value.problems]
    return ei.value.problems


def _one(write_tokenizer, **over) -> tuple[str, str]:
    problems = _problems(write_tokenizer(**{k.replace("__", "."): v for k, v in over.items()}))
    assert len(problems) == 1, problems
    return problems[0]


# --- the shipped files --------------------------------------------------------------------------

def test_production_config_is_the_seed_in_our_schema():
    cfg = load_tokenizer_config(PRODUCTION)
    assert list(cfg.families) == ["summary", "temporal", "architecture"]
    s, t, a = (cfg.families[n] for n in ("summary", "temporal", "architecture"))
    # identity on SUMMARY (a commented change from the seed's MLPEncoder: readable categories, SPEC 8)
    assert s.encoder == "IdentityEncoder" and not s.trained and s.pretrain is None
    assert s.blocks == ["mean"]
    assert t.encoder == "TemporalCNNEncoder" and t.encoder_params.embedding_dim == 128
    assert t.encoder_params.architecture == "resnet1d_3" and t.states.start == 1 and t.states.stop is None
    assert a.encoder == "IdentityEncoder" and not a.trained and a.pretrain is None
    m, tr = cfg.model, cfg.training
    assert (m.group_embedding_dim, m.group_hidden_dim, m.levels, m.codebook_scale) == (256, 512, [], 2)
    assert (m.commitment_cost, m.use_ema, m.decay, m.kmeans_init, m.rotation_trick) == (0.25, True, 0.99, True, False)
    assert (tr.batch_size, tr.learning_rate, tr.optimizer, tr.orthogonality_target) == (512, 1e-3, "adam", 0.15)
    assert (tr.reconstruction_weight, tr.vq_weight, tr.orthogonality_weight, tr.informativeness_weight,
            tr.topo_weight, tr.topo_samples) == (1.0, 1.0, 0.1, 0.1, 0.3, 512)
    assert 2000 <= tr.max_steps <= 12000 and tr.early_stopping_patience > 0 and tr.dead_code_reset_interval > 0


def _seed_blocks() -> dict:
    seed = next((ROOT.parent / "shared" / "seeds").glob("002_*.txt"), None)
    if seed is None:
        pytest.skip("seed documents not beside the checkout")
    blocks = [b.split("```", 1)[0] for b in seed.read_text().split("```yaml")[1:3]]
    data = {}
    for b in blocks:
        data.update(yaml.safe_load(b))
    return data


def test_the_seed_keeps_its_key_names_and_only_the_epoch_keys_are_refused(tmp_path):
    seed = _seed_blocks()
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False))
    assert _problems(path) == [
        ("training.num_epochs",
         "training length is given in optimizer steps so that it does not depend on N (SPEC 9); use max_steps (one "
         "epoch is ceil(N_train / batch_size) steps: the seed's 200 epochs with 90,000 training rows and batch 512 "
         "were 35,200 steps)"),
        ("training.val_every_n_epochs", "validation is scheduled in optimizer steps; use val_every_steps"),
        ("training.category_assignment", "set it in model.category_assignment"),
    ]
    for key in ("num_epochs", "val_every_n_epochs", "category_assignment"):
        del seed["training"][key]
    path.write_text(yaml.safe_dump(seed, sort_keys=False))
    cfg = load_tokenizer_config(path)
    # where the seed gives a value, production.yaml keeps it (except what a comment there explains)
    prod = yaml.safe_load(PRODUCTION.read_text())
    for fam, block in seed["families"].items():
        if fam == "summary":  # identity instead of the seed's MLP: explained in production.yaml
            assert prod["families"][fam]["encoder"] == "IdentityEncoder" and block["encoder"] == "MLPEncoder"
            continue
        assert prod["families"][fam]["encoder"] == block["encoder"]
        assert prod["families"][fam]["encoder_params"] == block["encoder_params"]
    assert {k: prod["model"][k] for k in seed["model"]} == seed["model"]
    changed = {"early_stopping_patience", "dead_code_reset_interval", "use_torch_compile"}  # steps, not epochs
    assert {k: prod["training"][k] for k in seed["training"] if k not in changed} == {
        k: v for k, v in seed["training"].items() if k not in changed}
    assert cfg.training.use_torch_compile is True


def test_demo_config_is_small():
    cfg = load_tokenizer_config(DEMO)
    assert {n: f.encoder for n, f in cfg.families.items()} == {
        "summary": "IdentityEncoder", "temporal": "TemporalCNNEncoder", "architecture": "IdentityEncoder"}
    assert cfg.training.max_steps <= 500 and cfg.training.device == "cpu"
    assert cfg.families["temporal"].encoder_params.embedding_dim <= 32 and cfg.families["temporal"].pretrain.steps <= 500


@pytest.mark.parametrize("path", [PRODUCTION, DEMO], ids=lambda p: p.name)
def test_shipped_configs_round_trip(path):
    cfg = load_tokenizer_config(path)
    again = TokenizerConfig.model_validate(cfg.model_dump())
    assert again == cfg and again.model_dump() == cfg.model_dump()


def test_families_are_the_projects_feature_families():
    from spinlock_core.features.families import FAMILIES

    assert set(FAMILY_NAMES) == set(FAMILIES)


# --- defaults -----------------------------------------------------------------------------------

def test_defaults_follow_spec_8_and_9(write_tokenizer):
    cfg = load_tokenizer_config(write_tokenizer(**{"families.initial": {"encoder": "MLPEncoder"}}))
    assert cfg.families["summary"].blocks == ["mean"]
    assert cfg.families["temporal"].states.start == 1 and cfg.families["temporal"].states.count(32) == 31
    assert cfg.families["temporal"].pretrain == PretrainConfig() and cfg.families["summary"].pretrain is None
    assert cfg.families["initial"].encoder_params == MLPParams() and cfg.families["initial"].trained
    c = cfg.cleaning
    assert (c.signed_log.rule, c.mad_cap_k, c.variance_floor, c.min_reliability, c.duplicate_threshold,
            c.min_stratum_size, c.validation_fraction) == ("kurtosis", 5.0, 1e-8, 0.8, 0.99, 30, 0.1)
    m = cfg.model
    assert (m.num_categories, m.category_assignment, m.levels, m.codebook_scale, m.commitment_cost, m.decay) == (
        "auto", "auto", [], 2, 0.25, 0.99)
    assert m.use_ema and m.kmeans_init and not m.rotation_trick
    assert cfg.training.optimizer == "adam" and not cfg.training.use_torch_compile


def test_pooled_identity_reads_the_temporal_sequence(write_tokenizer):
    cfg = load_tokenizer_config(write_tokenizer(**{"families.temporal": {
        "encoder": "PooledIdentityEncoder", "encoder_params": {"statistics": ["mean", "slope"]},
        "states": {"start": 2, "stop": 30, "stride": 2}}}))
    fam = cfg.families["temporal"]
    assert fam.encoder_params == PooledIdentityParams(statistics=["mean", "slope"]) and not fam.trained
    assert fam.states.count(32) == 14 and fam.states.count(2) == 0


@pytest.mark.parametrize("n, scale, sizes", [(1, 1, (15, 6, 6)), (10, 2, (40, 22, 12)), (30, 2, (64, 34, 16)),
                                             (59, 1, (40, 20, 10))])
def test_auto_codebook_sizes(n, scale, sizes):
    # n = 30: base = floor(7 log2 30) = 34; K0 = 2 max(15, 32), K1 = 2 max(6, 17), K2 = 2 max(6, 8)
    assert auto_codebook_sizes(n, scale) == sizes
    assert VQModelConfig(codebook_scale=scale).codebook_sizes(n) == sizes
    assert VQModelConfig(levels=[9, 5, 3]).codebook_sizes(n) == (9, 5, 3)


# --- several problems, one run ------------------------------------------------------------------

def test_every_problem_of_a_tokenizer_file_is_reported_at_once(write_tokenizer):
    path = write_tokenizer(**{
        "families.summary": {"encoder": "MLPEncoder", "encoder_params": {"hidden_dims": [0, 64], "widht": 3},
                             "blocks": ["mean", "mean"]},
        "families.temporal": {"encoder": "MLPEncoder", "states": {"start": 5, "stop": 3}},
        "families.architecture.pretrain": {"steps": 10},
        "families.initail": {"encoder": "IdentityEncoder"},
        "cleaning.validation_fraction": 1.2,
        "model.levels": [32, 8],
        "model.num_categories": "many",
        "model.colour": "red",
        "training.num_epochs": 200,
        "training.optimizer": "sgd",
    })
    assert _problems(path) == [
        ("families.summary.encoder_params.hidden_dims[0]", "Input should be greater than 0"),
        ("families.summary.encoder_params.widht",
         "unknown key for MLPEncoder (allowed: hidden_dims, output_dim, dropout, activation, batch_norm)"),
        ("families.summary.blocks", "duplicate values in ['mean', 'mean']"),
        ("families.temporal.encoder", "MLPEncoder reads one row per operator, but temporal features are a sequence of "
                                      "states [N, T, 63]; use TemporalCNNEncoder or PooledIdentityEncoder"),
        ("families.temporal.states.stop", "must exceed start (5), got 3"),
        ("families.architecture.pretrain", "IdentityEncoder has no weights to pre-train; pretrain would change nothing"),
        ("families.initail", "unknown feature family 'initail'; known: summary, temporal, architecture, initial; "
                             "did you mean 'initial'?"),
        ("cleaning.validation_fraction", "Input should be less than 1"),
        ("model.num_categories", "use 'auto' (clamp(round(F / 10), 4, 25)) or an integer >= 1, got 'many'"),
        ("model.levels", "give 3 codebook sizes (levels 0, 1, 2), or [] for SPEC 9's rule; got 2"),
        ("model.colour", "unknown key"),
        ("training.optimizer", "only 'adam' is implemented (the seed's optimizer; the trainer builds no other); got 'sgd'"),
        ("training.num_epochs", "training length is given in optimizer steps so that it does not depend on N (SPEC 9); "
                                "use max_steps (one epoch is ceil(N_train / batch_size) steps: the seed's 200 epochs "
                                "with 90,000 training rows and batch 512 were 35,200 steps)"),
    ]


def test_schedule_problems_are_reported_together(write_tokenizer):
    assert _problems(write_tokenizer(**{"training.warmup_steps": 200, "training.val_every_steps": 300,
                                        "training.dead_code_reset_interval": 201, "training.topo_samples": 65})) == [
        ("training.warmup_steps", "must be below max_steps (200), got 200"),
        ("training.val_every_steps", "300 exceeds max_steps (200): it would never run"),
        ("training.dead_code_reset_interval", "201 exceeds max_steps (200): it would never run"),
        ("training.topo_samples", "rows are drawn from one batch: at most batch_size (64), got 65"),
    ]


def test_models_built_in_code_raise_with_every_problem():
    with pytest.raises(ValidationError) as ei:
        TokenizerConfig(families={"summary": {"encoder": "TemporalCNNEncoder"}, "spectral": {}},
                        model={"decay": 0.0})
    assert isinstance(ei.value, ValueError)
    assert [(e["loc"], e["msg"].removeprefix("Value error, ")) for e in ei.value.errors()] == [
        (("families", "summary", "encoder"), "TemporalCNNEncoder reads a sequence of states, but summary features are "
                                             "one row per operator [N, 360] (aggregated); use IdentityEncoder or MLPEncoder"),
        (("families", "spectral"), "unknown feature family 'spectral'; known: summary, temporal, architecture, initial"),
        (("model", "decay"), "Input should be greater than 0"),
    ]


# --- unknown keys -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "over, loc, msg",
    [
        ({"cleanup": {}}, "cleanup", "unknown key"),
        ({"model.num_levels": 3}, "model.num_levels", "unknown key"),
        ({"training.epochs": 3}, "training.epochs", "unknown key"),
        ({"cleaning.signed_log.base": 10}, "cleaning.signed_log.base", "unknown key"),
        ({"families.summary.columns": [1]}, "families.summary.columns", "unknown key"),
        ({"families.architecture.blocks": ["mean"]}, "families.architecture.blocks", "unknown key"),
        ({"families.summary.states": {"start": 0}}, "families.summary.states", "unknown key"),
        ({"families.temporal.states.end": 9}, "families.temporal.states.end", "unknown key"),
        ({"families.temporal.pretrain": {"epochs": 3}}, "families.temporal.pretrain.epochs", "unknown key"),
        ({"families.temporal.encoder_params.layers": 3}, "families.temporal.encoder_params.layers",
         "unknown key for TemporalCNNEncoder (allowed: embedding_dim, architecture, hidden_channels, kernel_size)"),
        ({"families.summary.encoder_params": {"output_dim": 4}}, "families.summary.encoder_params.output_dim",
         "unknown key for IdentityEncoder (allowed: none)"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(write_tokenizer, over, loc, msg):
    assert _one(write_tokenizer, **over) == (loc, msg)


# --- one rule each ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "over, loc, reason",
    [
        ({"families": {}}, "families", r"^name at least one feature family \(summary, temporal, architecture, initial\)$"),
        ({"families": DEL}, "families", r"^required key is missing$"),
        ({"families.spectral": {"encoder": "IdentityEncoder"}}, "families.spectral",
         r"^unknown feature family 'spectral'; known: summary, temporal, architecture, initial$"),
        ({"families.summary.encoder": "MLP"}, "families.summary.encoder",
         r"^unknown encoder 'MLP'; known: IdentityEncoder, MLPEncoder, TemporalCNNEncoder, PooledIdentityEncoder; "
         r"did you mean 'MLPEncoder'\?$"),
        ({"families.summary.encoder": DEL}, "families.summary.encoder", r"^required key is missing$"),
        ({"families.temporal.encoder": "IdentityEncoder"}, "families.temporal.encoder",
         r"^IdentityEncoder reads one row per operator, but temporal features are a sequence of states \[N, T, 63\]; "
         r"use TemporalCNNEncoder or PooledIdentityEncoder$"),
        ({"families.architecture.encoder": "PooledIdentityEncoder"}, "families.architecture.encoder",
         r"^PooledIdentityEncoder reads a sequence of states, but architecture features are one row per operator "
         r"\[N, P\]; use IdentityEncoder or MLPEncoder$"),
        ({"families.summary.blocks": []}, "families.summary.blocks", r"^name at least one block \(mean, std, cv\)$"),
        ({"families.summary.blocks": ["median"]}, "families.summary.blocks[0]", r"^Input should be 'mean', 'std' or 'cv'$"),
        ({"families.summary.encoder_params": [1]}, "families.summary.encoder_params",
         r"^Input should be a valid dictionary or instance of IdentityParams$"),
        ({"families.temporal.encoder_params.architecture": "transformer"}, "families.temporal.encoder_params.architecture",
         r"^use 'resnet1d_<blocks>' with 1 to 8 residual blocks, e.g. 'resnet1d_3'; got 'transformer'$"),
        ({"families.temporal.encoder_params.architecture": "resnet1d_9"}, "families.temporal.encoder_params.architecture",
         r"got 'resnet1d_9'$"),
        ({"families.temporal.encoder_params.kernel_size": 4}, "families.temporal.encoder_params.kernel_size",
         r"^must be odd \(same-length convolutions over the states\), got 4$"),
        ({"families.temporal.encoder_params.embedding_dim": 0}, "families.temporal.encoder_params.embedding_dim",
         r"^Input should be greater than 0$"),
        ({"families.temporal.pretrain.learning_rate": 0}, "families.temporal.pretrain.learning_rate",
         r"^Input should be greater than 0$"),
        ({"families.temporal.states.start": -1}, "families.temporal.states.start", r"^Input should be greater than or equal to 0$"),
        ({"families.temporal": {"encoder": "PooledIdentityEncoder", "encoder_params": {"statistics": []}}},
         "families.temporal.encoder_params.statistics", r"^name at least one statistic$"),
        ({"families.temporal": {"encoder": "PooledIdentityEncoder", "pretrain": {"steps": 5}}},
         "families.temporal.pretrain", r"^PooledIdentityEncoder has no weights to pre-train; pretrain would change nothing$"),
        ({"families.summary": {"encoder": "MLPEncoder", "encoder_params": {"dropout": 1.0}}},
         "families.summary.encoder_params.dropout", r"^Input should be less than 1$"),
        ({"families.summary": {"encoder": "MLPEncoder", "encoder_params": {"activation": "swish"}}},
         "families.summary.encoder_params.activation", r"^Input should be 'relu', 'gelu', 'silu', 'tanh' or 'elu'$"),
        ({"cleaning.signed_log.rule": "boxcox"}, "cleaning.signed_log.rule", r"^Input should be 'kurtosis', 'quantile_ratio' or 'none'$"),
        ({"cleaning.signed_log.threshold": 0}, "cleaning.signed_log.threshold", r"^Input should be greater than 0$"),
        ({"cleaning.mad_cap_k": -1}, "cleaning.mad_cap_k", r"^Input should be greater than 0$"),
        ({"cleaning.variance_floor": float("inf")}, "cleaning.variance_floor", r"^Input should be a finite number$"),
        ({"cleaning.min_reliability": 1.0}, "cleaning.min_reliability", r"^Input should be less than 1$"),
        ({"cleaning.duplicate_threshold": 0}, "cleaning.duplicate_threshold", r"^Input should be greater than 0$"),
        ({"cleaning.min_stratum_size": 1}, "cleaning.min_stratum_size", r"^Input should be greater than or equal to 3$"),
        ({"cleaning.linear_combination_tol": 0}, "cleaning.linear_combination_tol", r"^Input should be greater than 0$"),
        ({"cleaning.validation_fraction": 0}, "cleaning.validation_fraction", r"^Input should be greater than 0$"),
        ({"cleaning.split_seed": -1}, "cleaning.split_seed", r"^Input should be greater than or equal to 0$"),
        ({"model.num_categories": 0}, "model.num_categories", r"^use 'auto' .* or an integer >= 1, got 0$"),
        ({"model.num_categories": True}, "model.num_categories", r"got True$"),
        ({"model.category_assignment": "family"}, "model.category_assignment", r"^Input should be 'auto'$"),
        ({"model.levels": [32, 1, 0]}, "model.levels", r"^codebook sizes must be >= 2, got \[1, 0\]$"),
        ({"model.levels": [32, 16, 8, 4]}, "model.levels", r"^give 3 codebook sizes .*; got 4$"),
        ({"model.levels": [32, 16, 8], "model.codebook_scale": 3}, "model.codebook_scale",
         r"^only scales SPEC 9's automatic sizes, and levels gives them explicitly; codebook_scale would change nothing$"),
        ({"model.use_ema": False, "model.decay": 0.9}, "model.decay",
         r"^only applies to EMA codebooks \(use_ema: true\); decay would change nothing$"),
        ({"model.decay": 1.0}, "model.decay", r"^Input should be less than 1$"),
        ({"model.commitment_cost": -0.1}, "model.commitment_cost", r"^Input should be greater than or equal to 0$"),
        ({"model.codebook_scale": 0}, "model.codebook_scale", r"^Input should be greater than 0$"),
        ({"model.group_embedding_dim": 0}, "model.group_embedding_dim", r"^Input should be greater than 0$"),
        ({"model.decoder_hidden_dims": [64, -1]}, "model.decoder_hidden_dims[1]", r"^Input should be greater than 0$"),
        ({"training.batch_size": 0}, "training.batch_size", r"^Input should be greater than 0$"),
        ({"training.learning_rate": 0}, "training.learning_rate", r"^Input should be greater than 0$"),
        ({"training.max_steps": 0}, "training.max_steps", r"^Input should be greater than 0$"),
        ({"training.val_every_n_epochs": 5}, "training.val_every_n_epochs",
         r"^validation is scheduled in optimizer steps; use val_every_steps$"),
        ({"training.category_assignment": "auto"}, "training.category_assignment", r"^set it in model.category_assignment$"),
        ({"training.reconstruction_weight": 0}, "training.reconstruction_weight", r"^Input should be greater than 0$"),
        ({"training.topo_weight": -0.3}, "training.topo_weight", r"^Input should be greater than or equal to 0$"),
        ({"training.orthogonality_weight": float("nan")}, "training.orthogonality_weight", r"^Input should be a finite number$"),
        ({"training.orthogonality_target": 1.5}, "training.orthogonality_target", r"^Input should be less than 1$"),
        ({"training.early_stopping_patience": -1}, "training.early_stopping_patience",
         r"^Input should be greater than or equal to 0$"),
        ({"training.device": "tpu"}, "training.device", r"^Input should be 'auto', 'cpu' or 'cuda'$"),
        ({"training.min_val_quality": 1.5}, "training.min_val_quality", r"^Input should be less than or equal to 1$"),
        ({"training.topo_samples": 2}, "training.topo_samples", r"^Input should be greater than or equal to 3$"),
    ],
)
def test_rule_messages(write_tokenizer, over, loc, reason):
    got_loc, got = _one(write_tokenizer, **over)
    assert got_loc == loc and re.search(reason, got), (got_loc, got)


@pytest.mark.parametrize(
    "over, reason",
    [
        # explicit levels: K is the largest level
        ({"model.levels": [64, 16, 8], "model.threshold_ema_dead_code": 0.5},
         "must be well below batch_size / K, the expected uses of a code per batch, or codes in use are expired: "
         "at most 0.25 * 64 / 64 = 0.25 (K = 64, the largest of levels); got 0.5"),
        # automatic levels: the smallest possible K0 = 15 * codebook_scale is a lower bound on the largest codebook
        ({"model.threshold_ema_dead_code": 1.0},
         "must be well below batch_size / K, the expected uses of a code per batch, or codes in use are expired: "
         "at most 0.25 * 64 / 30 = 0.533 (K = 30, the smallest possible level-0 size with levels: [], "
         "15 * codebook_scale); got 1.0"),
    ],
)
def test_dead_code_threshold_must_be_well_below_batch_over_codebook(write_tokenizer, over, reason):
    assert _one(write_tokenizer, **over) == ("model.threshold_ema_dead_code", reason)


def test_dead_code_threshold_within_limits_and_off(write_tokenizer):
    assert load_tokenizer_config(write_tokenizer(**{"model.threshold_ema_dead_code": 0.5})).model.threshold_ema_dead_code == 0.5
    assert load_tokenizer_config(write_tokenizer(**{"model.threshold_ema_dead_code": 0})).model.threshold_ema_dead_code == 0
    cfg = load_tokenizer_config(write_tokenizer(**{"model.levels": [16, 8, 8], "model.threshold_ema_dead_code": 1.0}))
    assert cfg.model.codebook_sizes(100) == (16, 8, 8)


def test_missing_and_malformed_tokenizer_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_tokenizer_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("families: {summary: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed YAML: line \d+, column \d+"):
        load_tokenizer_config(bad)


# --- which kind of file -------------------------------------------------------------------------

def test_load_config_tells_the_kinds_apart(write_tokenizer, write_config):
    assert isinstance(load_config(PRODUCTION), TokenizerConfig)
    assert isinstance(load_config(write_config()), ExperimentConfig)
    assert config_kind({"model": {}}) == "tokenizer" and config_kind({"training": {}, "sampling": {}}) == "experiment"
    assert config_kind({}) == "experiment"
    # a tokenizer file with a typo is still judged as a tokenizer file
    assert _problems_of(load_config, write_tokenizer(**{"trainig": {}})) == [("trainig", "unknown key")]


def _problems_of(loader, path):
    with pytest.raises(ConfigError) as ei:
        loader(path)
    return ei.value.problems


# --- experiments name their tokenizer config ----------------------------------------------------

def test_shipped_experiments_resolve_their_tokenizer_config():
    demo = load_experiment(ROOT / "configs/experiments/demo.yaml")
    assert demo.tokenizer.config == "configs/vqvae/demo.yaml"
    assert demo.tokenizer.path == DEMO.resolve() and demo.tokenizer.loaded == load_tokenizer_config(DEMO)
    big = load_experiment(ROOT / "configs/experiments/tokenizer_4k.yaml")
    assert big.tokenizer.path == PRODUCTION.resolve() and big.tokenizer.loaded == load_tokenizer_config(PRODUCTION)
    # the seed's production experiment has no tokenizer key and still validates
    assert load_experiment(ROOT / "configs/experiments/100k_full_features.yaml").tokenizer is None


def test_tokenizer_path_is_resolved_beside_the_experiment_first(tmp_path, write_config, write_tokenizer):
    (tmp_path / "configs/vqvae").mkdir(parents=True)
    local = tmp_path / "configs/vqvae/demo.yaml"
    local.write_text(yaml.safe_dump(_data(**{"training.max_steps": 123})))
    cfg = load_experiment(write_config(data=tiny_dict(tokenizer={"config": "configs/vqvae/demo.yaml"})))
    assert cfg.tokenizer.path == local.resolve() and cfg.tokenizer.loaded.training.max_steps == 123
    # and then the repository root
    cfg = load_experiment(write_config(data=tiny_dict(tokenizer={"config": "configs/vqvae/production.yaml"})))
    assert cfg.tokenizer.path == PRODUCTION.resolve()
    # an absolute path as given
    cfg = load_experiment(write_config(data=tiny_dict(tokenizer={"config": str(write_tokenizer())})))
    assert cfg.tokenizer.path == tmp_path / "tok.yaml"


def test_experiment_built_in_code_resolves_against_the_repository():
    data = yaml.safe_load((ROOT / "configs/experiments/demo.yaml").read_text())
    cfg = ExperimentConfig.model_validate(data)
    assert cfg.tokenizer.path == DEMO.resolve() and REPO_ROOT == ROOT.resolve()
    # the dumped config (as stored in the dataset attributes) loads again
    assert ExperimentConfig.model_validate_json(cfg.model_dump_json()).tokenizer.loaded == cfg.tokenizer.loaded


def test_missing_tokenizer_config_names_both_files(write_config):
    path = write_config(data=tiny_dict(tokenizer={"config": "configs/vqvae/nope.yaml"}))
    with pytest.raises(ConfigError) as ei:
        load_experiment(path)
    tried = f"{path.parent / 'configs/vqvae/nope.yaml'}, {REPO_ROOT / 'configs/vqvae/nope.yaml'}"
    assert ei.value.problems == [
        ("tokenizer.config", f"tokenizer config 'configs/vqvae/nope.yaml' not found (looked for {tried})"),
    ]
    assert str(ei.value).startswith(f"{path}: tokenizer.config: tokenizer config 'configs/vqvae/nope.yaml' not found")


def test_invalid_tokenizer_config_names_both_files_and_every_problem(write_config, write_tokenizer):
    tok = write_tokenizer(**{"model.decay": 2, "training.optimizer": "sgd"})
    path = write_config(data=tiny_dict(tokenizer={"config": "tok.yaml"}, **{"simulation.num_channels": 4}))
    with pytest.raises(ConfigError) as ei:
        load_experiment(path)
    assert ei.value.problems == [
        ("simulation.num_channels", "must be 3: the features are defined for 3 channels (the cross-channel features "
                                    "use the pairs (0,1), (0,2), (1,2)); got 4"),
        ("tokenizer.config", f"{tok}: model.decay: Input should be less than 1"),
        ("tokenizer.config", f"{tok}: training.optimizer: only 'adam' is implemented (the seed's optimizer; the "
                             "trainer builds no other); got 'sgd'"),
    ]
    assert str(ei.value).splitlines()[1] == f"{path}: tokenizer.config: {tok}: model.decay: Input should be less than 1"


def test_tokenizer_config_must_fit_the_experiment(write_config, write_tokenizer):
    tok = write_tokenizer(**{"families.initial": {"encoder": "IdentityEncoder"},
                             "families.temporal.states": {"start": 6}})
    path = write_config(data=tiny_dict(tokenizer={"config": str(tok)}))  # tiny: T = 6, initial off
    with pytest.raises(ConfigError) as ei:
        load_experiment(path)
    assert ei.value.problems == [
        ("tokenizer.config", f"{tok}: families.temporal.states: selects none of the experiment's 6 states "
                             "(simulation.num_timesteps)"),
        ("tokenizer.config", f"{tok}: families.initial: the experiment does not compute this family "
                             "(features.initial.enabled is false)"),
    ]


@pytest.mark.parametrize(
    "value, reason",
    [
        ("configs/vqvae/demo.yaml", "write it as a mapping, tokenizer: {config: 'configs/vqvae/demo.yaml'}"),
        ({"config": ""}, "String should have at least 1 character"),
        ({"config": "configs/vqvae/demo.yaml", "checkpoint": "x"}, "unknown key"),
    ],
)
def test_tokenizer_key_form(write_config, value, reason):
    with pytest.raises(ConfigError) as ei:
        load_experiment(write_config(data=tiny_dict(tokenizer=value)))
    ((loc, msg),) = ei.value.problems
    assert loc.startswith("tokenizer") and msg == reason


# --- spinlock validate --------------------------------------------------------------------------

def _validate(*paths) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "spinlock"
    return subprocess.run([str(exe), "validate", *map(str, paths)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ}, timeout=120)


def test_spinlock_validate_tokenizer_configs(write_tokenizer):
    exps = [ROOT / "configs/experiments/demo.yaml", ROOT / "configs/experiments/tokenizer_4k.yaml"]
    r = _validate(PRODUCTION, DEMO, *exps)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == [
        f"OK {PRODUCTION}: tokenizer: summary (IdentityEncoder), temporal (TemporalCNNEncoder), architecture "
        "(IdentityEncoder); levels auto (codebook_scale 2); 6000 steps, batch 512",
        f"OK {DEMO}: tokenizer: summary (IdentityEncoder), temporal (TemporalCNNEncoder), architecture "
        "(IdentityEncoder); levels auto (codebook_scale 1); 300 steps, batch 64",
        f"OK {exps[0]}: demo, 128 operators, 10 parameters, 32x32, T=32, M=3, 4 shards, tokenizer configs/vqvae/demo.yaml",
        f"OK {exps[1]}: tokenizer_4k, 4096 operators, 10 parameters, 32x32, T=32, M=3, 4 shards, "
        "tokenizer configs/vqvae/production.yaml",
    ]
    bad = write_tokenizer(**{"families.temporal.encoder": "MLPEncoder", "cleaning.mad_cap_k": 0,
                             "model.levels": [8], "training.num_epochs": 10, "training.bogus": 1})
    r = _validate(DEMO, bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stdout.startswith(f"OK {DEMO}:") and len(r.stdout.splitlines()) == 1
    assert [ln.split(": ")[:2] for ln in r.stderr.splitlines()] == [
        [str(bad), "families.temporal.encoder"],
        [str(bad), "cleaning.mad_cap_k"],
        [str(bad), "model.levels"],
        [str(bad), "training.num_epochs"],
        [str(bad), "training.bogus"],  # pydantic lists unknown keys after the fields
    ]
