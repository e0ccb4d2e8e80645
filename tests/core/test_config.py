"""Config schema: every shipped config validates; every bad input gets one precise message.

Several problems in one file, and the rules added for them: tests/core/test_config_problems.py.
"""

from __future__ import annotations


import pytest

from spinlock_core.config import ConfigError, load_experiment
from tests.conftest import ROOT, tiny_dict

CONFIGS = sorted((ROOT / "configs/experiments").glob("*.yaml"))  # configs/vqvae: test_tokenizer_config.py


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_experiment(path)
    assert cfg.sampling.total_samples > 0


def test_production_config_is_the_seed_verbatim():
    seed = next((ROOT.parent / "shared" / "seeds").glob("000_*.txt"), None)
    if seed is None:
        pytest.skip("seed documents not beside the checkout")
    text = seed.read_text()
    block = text.split("```yaml", 1)[1].split("```", 1)[0]
    assert (ROOT / "configs/experiments/100k_full_features.yaml").read_text().strip() == block.strip()
    cfg = load_experiment(ROOT / "configs/experiments/100k_full_features.yaml")
    assert cfg.parameter_space.dim == 12 and cfg.dataset.storage.shard_size == 1024
    assert cfg.grid_size == 64 and cfg.simulation.num_timesteps == 256


def test_baseline_shaped_config():
    cfg = load_experiment(ROOT / "configs/experiments/baseline_10k.yaml")
    # T = 2: the initial condition and one operator application (the seed's one stored output)
    assert cfg.parameter_space.dim == 15 and cfg.grid_size == 128 and cfg.simulation.num_timesteps == 2
    assert {"dt", "alpha"} <= set(cfg.parameter_space.names)


def _err(write_config, **over) -> str:
    with pytest.raises(ConfigError) as ei:
        load_experiment(write_config(**over))
    return str(ei.value)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"sampling__bogus": 1}, r"sampling\.bogus: unknown key"),
        ({"parameter_space__architecture__num_layers__extra": 1}, r"parameter_space\.architecture\.num_layers\.extra: unknown key"),
        ({"sampling__total_samples": "many"}, r"sampling\.total_samples: Input should be a valid integer"),
        ({"sampling__total_samples": 0}, r"sampling\.total_samples: Input should be greater than 0"),
        ({"parameter_space__architecture__dropout_rate__bounds": [0.3, 0.1]}, r"parameter_space\.architecture\.dropout_rate\.bounds: lower bound 0.3 exceeds upper bound 0.1$"),
        ({"parameter_space__stochastic__noise_scale__bounds": [0.0, 1.0]}, r"stochastic\.noise_scale\.bounds: log_scale needs bounds > 0, got lower bound 0.0$"),
        ({"parameter_space__evolution__update_policy__weights": [0.5, 0.4]}, r"evolution\.update_policy\.weights: must sum to 1 \(within 1e-6\), got 0.9$"),
        ({"parameter_space__evolution__update_policy__weights": [0.5]}, r"evolution\.update_policy\.weights: 1 weights for 2 choices$"),
        ({"simulation__input_generation__ic_type_weights": {"gaussian_random_field": 0.5, "localized": 0.4},
          "simulation__input_generation__multiscale_grf_low": "__delete__", "simulation__input_generation__structured": "__delete__"},
         r"input_generation\.ic_type_weights: weights must sum to 1 \(within 1e-6\), got 0.9$"),
        ({"simulation__input_generation__ic_type_weights": {"gaussian_random_field": 0.25, "multiscale_grf_low": 0.25, "structured": 0.25, "warp_drive": 0.25},
          "simulation__input_generation__localized": "__delete__"}, r"input_generation\.ic_type_weights\.warp_drive: unknown IC type 'warp_drive': .*; known types: gaussian_random_field, localized, multiscale_grf, structured$"),
        ({"simulation__input_generation__structured": {"wavelength_range": [10.0, 5.0]}}, r"input_generation\.structured\.wavelength_range: lower bound 10.0 exceeds upper bound 5.0$"),
        ({"parameter_space__architecture__widget": {"type": "integer", "bounds": [1, 2]}}, r"architecture\.widget: unknown parameter"),
        ({"parameter_space__architecture__activation__choices": ["gelu", "swish9"]}, r"architecture\.activation\.choices: unknown value\(s\) \['swish9'\]; known: \['elu', 'gelu'"),
        ({"parameter_space__operator__grid_size__choices": [16, 32]}, r"operator\.grid_size: one dataset holds one grid size"),
        ({"parameter_space__architecture__num_layers__type": "float"}, r"num_layers: Input tag 'float' found using 'type' does not match"),
        ({"dataset__storage__compression": "zstd"}, r"dataset\.storage\.compression: Input should be 'gzip', 'lzf' or 'none'"),
    ],
)
def test_bad_config_messages(write_config, overrides, expected):
    import re

    msg = _err(write_config, **overrides)
    assert re.search(expected, msg, re.M), msg
    assert len(msg.splitlines()) == 1, msg  # one problem, one message
    assert "Traceback" not in msg


def test_block_without_weight_is_rejected(write_config):
    d = tiny_dict()
    d["simulation"]["input_generation"]["gaussian_random_field_v9"] = {"variance": 2.0, "length_scale": 0.1}
    with pytest.raises(ConfigError, match="gaussian_random_field_v9: IC variant block has no entry in ic_type_weights"):
        load_experiment(write_config(data=d))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {name: x\nsampling: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed YAML: line \d+, column \d+"):
        load_experiment(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_experiment(lst)


def test_missing_section(write_config, delete):
    d = tiny_dict(simulation=delete)
    with pytest.raises(ConfigError, match=r"simulation: required key is missing"):
        load_experiment(write_config(data=d))
