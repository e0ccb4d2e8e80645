"""Configs fail at load time, with every problem listed: one ``(field.path, reason)`` per problem.

Covers the rules that stop what would otherwise fail (or silently do nothing) after the rollouts
ran: channels, grid sizes, names and labels that must fit the storage layout, IC types, keys that
are accepted but not implemented, parameters that no operator reads; and `spinlock validate`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from spinlock_core.config import ConfigError, ParameterSpace, load_experiment
from spinlock_core.config.experiment import SobolConfig
from spinlock_core.config.parameters import ChoiceParam
from spinlock_core.sampling import sobol_points
from tests.conftest import ROOT, tiny_dict

KNOWN_IC = "gaussian_random_field, localized, multiscale_grf, structured"
IG = "simulation.input_generation"
D = "__delete__"


def _problems(write_config, **over) -> list[tuple[str, str]]:
    data = tiny_dict(**{k.replace("__", "."): v for k, v in over.items()})
    with pytest.raises(ConfigError) as ei:
        load_experiment(write_config(data=data))
    assert "Traceback" not in str(ei.value)
    return ei.value.problems


def _one(write_config, **over) -> tuple[str, str]:
    problems = _problems(write_config, **over)
    assert len(problems) == 1, problems
    return problems[0]


# --- several problems, one run ------------------------------------------------------------------

def test_every_problem_of_a_file_is_reported_at_once(write_config):
    d = tiny_dict(**{
        "metadata.name": "my-experiment",
        "simulation.num_channels": 4,
        "parameter_space.operator.grid_size.choices": [15],
        "parameter_space.architecture.kernel_size.choices": [3, 4],
        "parameter_space.architecture.dropout_rate.bounds": [0.3, 0.1],
        "sampling.strategy": "sobol",
        "sampling.sobol.scramble": False,
        "sampling.sobol.scramble_method": "owen",
        "simulation.input_generation.method": "fixed",
        "simulation.input_generation.structured": {"num_modes": 0, "wavelength_range": [9.0, 3.0]},
    })
    weights = d["simulation"]["input_generation"]["ic_type_weights"]
    weights["gausian_random_field"] = weights.pop("gaussian_random_field")
    path = write_config(data=d)
    with pytest.raises(ConfigError) as ei:
        load_experiment(path)
    problems = ei.value.problems
    assert problems == [
        ("metadata.name", "use only letters, digits and '_' (the name is a folder name and the prefix of the "
                          "experiment's Dagster asset keys, whose op names allow only [A-Za-z0-9_]); got 'my-experiment'"),
        ("parameter_space.architecture.kernel_size.choices", "kernel sizes must be odd, got [4]"),
        ("parameter_space.architecture.dropout_rate.bounds", "lower bound 0.3 exceeds upper bound 0.1"),
        ("parameter_space.operator.grid_size.choices",
         "grid size must be even and >= 8 (the spectral and gradient features need it), got 15"),
        ("sampling.strategy", "only 'sobol_stratified' is implemented (scrambled Sobol points with the stratum-coverage "
                              "check of sampling.stratification; to skip that check set "
                              "sampling.validation.check_stratification: false); got 'sobol'"),
        ("sampling.sobol.scramble_method", "'owen' adds nested-uniform scrambling on top of scipy's scrambled points, "
                                           "and scramble: false asks for the unscrambled sequence; set scramble: true, "
                                           "or scramble_method: lms"),
        (f"{IG}.method", "only 'sampled' is implemented (each operator's IC variant is drawn from ic_type_weights and "
                         "its field generated from the variant's block); got 'fixed'"),
        (f"{IG}.structured.num_modes", "Input should be greater than or equal to 1"),
        (f"{IG}.structured.wavelength_range", "lower bound 9.0 exceeds upper bound 3.0"),
        # (weight order: the renamed key went last)
        (f"{IG}.ic_type_weights.gausian_random_field",
         "unknown IC type 'gausian_random_field': the name is not a known type (nor one followed by '_<variant>'), and "
         f"it has no block with a 'type' key or keys that identify one; known types: {KNOWN_IC}; "
         "did you mean 'gaussian_random_field' (a block of that name has no weight)?"),
        ("simulation.num_channels", "must be 3: the features are defined for 3 channels (the cross-channel features "
                                    "use the pairs (0,1), (0,2), (1,2)); got 4"),
    ]
    # the message: one `FILE: field.path: reason` line per problem
    lines = str(ei.value).splitlines()
    assert lines == [f"{path}: {loc}: {msg}" for loc, msg in problems]


def test_problems_in_several_parameters_of_one_group(write_config):
    """A broken parameter hides nothing about its neighbours."""
    problems = _problems(
        write_config,
        parameter_space__architecture__num_layers__bounds=[4, 1],
        parameter_space__architecture__kernel_size__choices=[3, 3],
        parameter_space__architecture__activation__choices=["gelu", "swish"],
        parameter_space__architecture__widget={"type": "boolean"},
        parameter_space__architecture__base_channels__type="float",
    )
    assert [loc for loc, _ in problems] == [
        "parameter_space.architecture.num_layers.bounds",
        "parameter_space.architecture.base_channels",
        "parameter_space.architecture.kernel_size.choices",
        "parameter_space.architecture.activation.choices",
        "parameter_space.architecture.widget",
    ]
    assert problems[2][1] == "duplicate values in [3, 3]"
    assert problems[4][1].startswith("unknown parameter (it would be sampled but never used); known: activation, alpha")


def test_a_choice_reports_each_of_its_problems(write_config):
    problems = _problems(write_config, parameter_space__evolution__update_policy__weights=[-0.5],
                         parameter_space__evolution__update_policy__choices=["residual", "residual"])
    assert problems == [
        ("parameter_space.evolution.update_policy.weights", "1 weights for 2 choices"),
        ("parameter_space.evolution.update_policy.weights", "must be finite and non-negative, got [-0.5]"),
        ("parameter_space.evolution.update_policy.choices", "duplicate values in ['residual', 'residual']"),
    ]


def test_models_built_in_code_raise_with_every_problem():
    with pytest.raises(ValidationError) as ei:
        ParameterSpace(architecture={"kernel_size": {"type": "choice", "choices": [2, 4]}, "wobble": {"type": "boolean"}},
                       stochastic={"noise_type": {"type": "choice", "choices": ["gaussian", "laplace"]}})
    assert isinstance(ei.value, ValueError)
    assert [(e["loc"], e["msg"]) for e in ei.value.errors()] == [
        (("architecture", "kernel_size", "choices"), "kernel sizes must be odd, got [2, 4]"),
        (("architecture", "wobble"), ei.value.errors()[1]["msg"]),
    ]
    assert ei.value.errors()[1]["msg"].startswith("unknown parameter")
    with pytest.raises(ValueError, match="scramble_method\n  'owen' adds nested-uniform scrambling"):
        SobolConfig(scramble=False, scramble_method="owen")
    with pytest.raises(ValueError, match=r"2 validation errors for ChoiceParam\nweights\n  1 weights for 2 choices"):
        ChoiceParam(type="choice", choices=[1, 1], weights=[1.0])


@pytest.mark.parametrize(
    "over",
    [
        {"parameter_space__architecture__activation__choices": [[1, 2]]},
        {"parameter_space__evolution__update_policy__choices": [{"a": 1}, "convex"]},
        {"parameter_space__operator__grid_size__choices": ["big"]},
        {"parameter_space__operator__grid_size__choices": [True]},
        {"parameter_space__architecture__kernel_size": {"type": "boolean"}},
        {"parameter_space__architecture__dropout_rate": {"type": "choice", "choices": ["x", None]}},
        {"parameter_space__stochastic": [1]},
        {"parameter_space__architecture__num_layers": None},
        {"simulation__input_generation__structured": {"type": [1]}},
        {"simulation__input_generation__structured": [1, 2]},
        {"simulation__input_generation__structured": {"num_modes": "many", 3: 4}},
        {"simulation__input_generation__ic_type_weights": {"gaussian_random_field": None}},
        {"simulation__input_generation__ic_type_weights": {}},
        {"simulation__input_generation": None},
        {"simulation__grid_size": "x"},
        {"simulation__num_channels": None},
        {"sampling__sobol": {"scramble": "maybe", "scramble_method": "owen"}},
        {"metadata": {"name": 5}},
    ],
    ids=lambda o: next(iter(o)),
)
def test_malformed_values_give_problems_never_a_crash(write_config, over):
    assert _problems(write_config, **over)


# --- one rule each ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "over, loc, reason",
    [
        ({"simulation__num_channels": 1}, "simulation.num_channels", r"^must be 3: the features are defined for 3 channels .*; got 1$"),
        ({"parameter_space__operator__grid_size__choices": [6]}, "parameter_space.operator.grid_size.choices",
         r"^grid size must be even and >= 8 \(.*\), got 6$"),
        ({"parameter_space__operator__grid_size__choices": [33]}, "parameter_space.operator.grid_size.choices",
         r"^grid size must be even and >= 8 \(.*\), got 33$"),
        ({"parameter_space__operator__grid_size": D, "simulation__grid_size": 17}, "simulation.grid_size",
         r"^grid size must be even and >= 8 \(.*\), got 17$"),
        ({"parameter_space__operator__grid_size": D}, "simulation.grid_size", r"^required when grid_size is not in parameter_space$"),
        ({"simulation__grid_size": 32}, "simulation.grid_size",
         r"^32 would be ignored: parameter_space\.operator\.grid_size \(16\) sets the grid; remove one$"),
        ({"metadata__name": "a.b"}, "metadata.name", r"^use only letters, digits and '_' .*; got 'a\.b'$"),
        ({"metadata__name": "x" * 201}, "metadata.name", r"^at most 200 characters \(it becomes a folder and file name\), got 201$"),
        ({"sampling__stratification__method": "uniform"}, "sampling.stratification.method",
         r"^only 'adaptive' is implemented \(the Sobol points are used as drawn, .*; another method would change nothing\); got 'uniform'$"),
        ({"sampling__stratification__method": "none"}, "sampling.stratification.method", r"^only 'adaptive' is implemented .*; got 'none'$"),
        ({"sampling__strategy": "random"}, "sampling.strategy", r"^only 'sobol_stratified' is implemented .*; got 'random'$"),
        ({"simulation__input_generation__method": "fixed"}, f"{IG}.method", r"^only 'sampled' is implemented .*; got 'fixed'$"),
        ({"sampling__sobol__scramble": False, "sampling__sobol__scramble_method": "owen"}, "sampling.sobol.scramble_method",
         r"^'owen' adds nested-uniform scrambling .*; set scramble: true, or scramble_method: lms$"),
        ({"parameter_space__architecture__kernel_size": {"type": "integer", "bounds": [3, 5]}},
         "parameter_space.architecture.kernel_size.bounds", r"^use a choice of odd sizes \(an integer range would give even kernels\)$"),
        ({"parameter_space__architecture__num_layers__bounds": [0, 20]}, "parameter_space.architecture.num_layers.bounds",
         r"^values must be integers in \[1, 16\], got \[0, 20\]$"),
        ({"parameter_space__architecture__dropout_rate__bounds": [0.0, 0.99]}, "parameter_space.architecture.dropout_rate.bounds",
         r"^values must be numbers in \[0\.0, 0\.95\], got \[0\.99\]$"),
        ({"parameter_space__evolution__dt__bounds": [-0.1, 0.5]}, "parameter_space.evolution.dt.bounds",
         r"^values must be numbers >= 0\.0, got \[-0\.1\]$"),
        ({"parameter_space__evolution__alpha": {"type": "continuous", "bounds": [0.1, 0.9]},
          "parameter_space__evolution__update_policy": {"type": "choice", "choices": ["residual", "convex"], "weights": [1.0, 0.0]}},
         "parameter_space.evolution.alpha",
         r"^only the convex policy reads alpha, and no operator can have it: update_policy values \['residual'\]; "
         r"add 'convex' to update_policy or remove alpha \(simulation\.alpha sets the constant\)$"),
        ({"parameter_space__evolution__update_policy__choices": ["convex"], "parameter_space__evolution__update_policy__weights": D},
         "parameter_space.evolution.dt", r"^only the residual policy reads dt, and no operator can have it: update_policy values \['convex'\]"),
        ({"parameter_space__evolution__update_policy": D, "parameter_space__evolution__alpha": {"type": "continuous", "bounds": [0.1, 0.9]}},
         "parameter_space.evolution.alpha", r"update_policy values \['residual'\] \(update_policy is not a parameter\)"),
        ({"parameter_space__stochastic__noise_scale": {"type": "choice", "choices": [0.0]}, "parameter_space__stochastic__spatial_correlation": D},
         "parameter_space.stochastic.noise_schedule",
         r"^shapes the additive noise, but noise_scale is never > 0; noise_schedule would change nothing$"),
        ({"parameter_space__stochastic__dt": {"type": "continuous", "bounds": [0.1, 0.2]}}, "parameter_space.evolution.dt",
         r"^also defined in stochastic$"),
        ({"parameter_space": {}}, "parameter_space", r"^no parameters defined$"),
    ],
)
def test_rule_messages(write_config, over, loc, reason):
    got_loc, got = _one(write_config, **over)
    assert got_loc == loc and re.search(reason, got), (got_loc, got)


def test_noise_shapers_need_noise_scale(write_config):
    problems = _problems(write_config, parameter_space__stochastic__noise_scale=D)
    assert problems == [
        (f"parameter_space.stochastic.{n}",
         f"shapes the additive noise, but noise_scale is not a parameter (no noise is added); {n} would change nothing")
        for n in ("noise_schedule", "spatial_correlation")
    ]


def test_implemented_values_are_accepted(write_config):
    cfg = load_experiment(write_config(sampling__strategy="sobol_stratified", sampling__stratification__method="adaptive",
                                       simulation__input_generation__method="sampled", sampling__sobol__scramble_method="owen"))
    assert cfg.sampling.sobol.scramble and cfg.sampling.sobol.scramble_method == "owen"
    cfg = load_experiment(write_config("plain.yaml", sampling__sobol__scramble=False))
    assert not cfg.sampling.sobol.scramble and cfg.sampling.sobol.scramble_method == "lms"
    cfg = load_experiment(write_config("grid.yaml", parameter_space__operator__grid_size=D, simulation__grid_size=24))
    assert cfg.grid_size == 24


def test_owen_without_scramble_is_refused_by_the_sampler_too():
    with pytest.raises(ValueError, match=r"scramble_method='owen' needs scramble=True"):
        sobol_points(8, 3, seed=0, scramble=False, scramble_method="owen")


# --- IC variants --------------------------------------------------------------------------------

def test_misspelled_ic_type_names_the_key_not_a_consequence(write_config):
    d = tiny_dict()
    weights = d["simulation"]["input_generation"]["ic_type_weights"]
    weights["gausian_random_field"] = weights.pop("gaussian_random_field")
    with pytest.raises(ConfigError) as ei:
        load_experiment(write_config(data=d))
    ((loc, msg),) = ei.value.problems  # the unweighted block 'gaussian_random_field' is not reported apart
    assert loc == f"{IG}.ic_type_weights.gausian_random_field"
    assert msg.startswith("unknown IC type 'gausian_random_field'") and f"known types: {KNOWN_IC}" in msg
    assert msg.endswith("did you mean 'gaussian_random_field' (a block of that name has no weight)?")


def test_misspelled_ic_type_without_a_block(write_config):
    loc, msg = _one(write_config, simulation__input_generation__ic_type_weights={
        "gaussian_random_field": 0.25, "multiscale_grf_low": 0.25, "structured": 0.25, "localised": 0.25,
    }, simulation__input_generation__localized=D)
    assert loc == f"{IG}.ic_type_weights.localised"
    assert msg == (
        "unknown IC type 'localised': the name is not a known type (nor one followed by '_<variant>'), and it has no "
        f"block with a 'type' key or keys that identify one; known types: {KNOWN_IC}; did you mean 'localized'?"
    )


def test_unknown_ic_type_with_no_close_name(write_config):
    loc, msg = _one(write_config, simulation__input_generation__ic_type_weights={
        "gaussian_random_field": 0.25, "multiscale_grf_low": 0.25, "structured": 0.25, "warp_drive": 0.25,
    }, simulation__input_generation__localized=D, simulation__input_generation__warp_drive={"warp": 9})
    assert loc == f"{IG}.ic_type_weights.warp_drive"
    assert msg.endswith(f"and its block's keys (warp) fit no type and it has no 'type' key; known types: {KNOWN_IC}")


def test_misspelled_declared_type(write_config):
    assert _one(write_config, simulation__input_generation__structured={"type": "structurd"}) == (
        f"{IG}.structured.type", f"unknown IC type 'structurd'; known types: {KNOWN_IC}; did you mean 'structured'?"
    )


def test_ic_block_unknown_key_lists_the_allowed_ones(write_config):
    assert _one(write_config, simulation__input_generation__structured={"num_mode": 2}) == (
        f"{IG}.structured.num_mode", "unknown key for a structured block (allowed: num_modes, wavelength_range, amplitude_range)"
    )


@pytest.mark.parametrize(
    "name, reason",
    [
        ("gaussian_random_field_" + "x" * 19, "stored as a fixed-length ASCII label of at most 40 bytes (S40), got 41"),
        ("gaussian_random_field_é", "stored as a fixed-length ASCII label (S40), so it must be ASCII, got 'gaussian_random_field_é'"),
    ],
)
def test_ic_variant_names_fit_the_label_layout(write_config, name, reason):
    d = tiny_dict()
    ig = d["simulation"]["input_generation"]
    ig["ic_type_weights"][name] = ig["ic_type_weights"].pop("gaussian_random_field")
    ig[name] = ig.pop("gaussian_random_field")
    with pytest.raises(ConfigError) as ei:
        load_experiment(write_config(data=d))
    assert ei.value.problems == [(f"{IG}.ic_type_weights.{name}", reason)]


def test_forty_byte_variant_name_fits(write_config):
    d = tiny_dict()
    ig = d["simulation"]["input_generation"]
    name = "gaussian_random_field_" + "x" * 18
    ig["ic_type_weights"][name] = ig["ic_type_weights"].pop("gaussian_random_field")
    ig[name] = ig.pop("gaussian_random_field")
    assert len(name) == 40 and name in load_experiment(write_config(data=d)).simulation.input_generation.ic_type_weights


# --- spinlock validate --------------------------------------------------------------------------

def _validate(*paths) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "spinlock"
    return subprocess.run([str(exe), "validate", *map(str, paths)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ}, timeout=120)


def test_spinlock_validate_lists_every_problem(write_config):
    good = sorted((ROOT / "configs/experiments").glob("*.yaml"))
    r = _validate(*good)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == [f"OK {p}" for p in good]

    bad = write_config("bad.yaml", simulation__num_channels=2, metadata__name="bad name",
                       sampling__stratification__method="none",
                       simulation__input_generation__structured={"type": "sinusoids"})
    r = _validate(good[0], bad)
    assert r.returncode == 2
    assert r.stdout.startswith(f"OK {good[0]}:") and len(r.stdout.splitlines()) == 1
    lines = r.stderr.splitlines()
    assert [ln.split(": ")[:2] for ln in lines] == [
        [str(bad), "metadata.name"],
        [str(bad), "sampling.stratification.method"],
        [str(bad), f"{IG}.structured.type"],
        [str(bad), "simulation.num_channels"],
    ]
    assert "Traceback" not in r.stderr
