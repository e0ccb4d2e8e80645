"""Features extracted inside the rollout loop: shapes, names, batch independence, NaN policy, storage."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from spinlock_core.config import load_experiment
from spinlock_core.features.extract import RolloutFeatures
from spinlock_core.features.families import documented_nan, feature_names
from spinlock_core.features.quality import feature_report
from spinlock_core.features.sensitivity import sensitivity_features
from spinlock_core.features.summary import AGGREGATED_NAMES, SUMMARY_NAMES
from spinlock_core.features.temporal import TEMPORAL_NAMES
from spinlock_core.generation import (
    ic_types_for,
    initial_conditions_for,
    sample_parameters,
    simulate_operators,
    simulate_shard,
    write_feature_family,
    write_initial_conditions,
    write_parameters,
)
from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.rollout import rollout
from spinlock_core.storage.dataset import consolidate
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.paths import ExperimentPaths


def _features(cfg, idx, batch_size, sensitivity=False):
    cfg = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"batch_size": batch_size})})
    if sensitivity:
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={
            "summary": cfg.features.summary.model_copy(update={"extract_operator_features": True})})})
    unit, _ = sample_parameters(cfg)
    ics = initial_conditions_for(cfg, idx, ic_types_for(cfg, idx))
    fc = RolloutFeatures(cfg, int(idx[0]), len(idx), {"summary", "temporal"})
    simulate_operators(cfg, idx, unit[idx], ics, consumers=[fc])
    return fc


def test_batch_independence(tiny_config):
    """Operator i's features are the same computed alone or in a batch of 16."""
    idx = np.arange(16)
    together = _features(tiny_config, idx, 16)
    alone = _features(tiny_config, idx[5:6], 1)
    np.testing.assert_allclose(alone.temporal[0], together.temporal[5], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone.per_traj[0], together.per_traj[5], rtol=1e-4, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(alone.aggregated[0], together.aggregated[5], rtol=1e-4, atol=1e-5, equal_nan=True)


def test_shapes_names_and_nan_policy(tiny_config):
    fc = _features(tiny_config, np.arange(8), 4)
    m, t = tiny_config.simulation.num_realizations, tiny_config.simulation.num_timesteps
    assert fc.temporal.shape == (8, t, 63) and fc.per_traj.shape == (8, m, 120) and fc.aggregated.shape == (8, 360)
    assert len(TEMPORAL_NAMES) == 63 and len(SUMMARY_NAMES) == 120 and len(AGGREGATED_NAMES) == 360
    nan_cols = np.isnan(fc.aggregated).any(0)
    assert nan_cols[110:120].all() and nan_cols[230:240].all() and nan_cols[350:360].all()
    assert not (nan_cols & ~documented_nan(PATHS.SUMMARY_AGG, tiny_config)).any()
    assert np.isfinite(fc.temporal).all()


def test_sensitivity_columns_computed_when_enabled(tiny_config):
    fc = _features(tiny_config, np.arange(4), 4, sensitivity=True)
    sens = fc.per_traj[:, :, 110:120]
    assert np.isfinite(sens).all()
    assert np.isfinite(fc.aggregated[:, 110:120]).all()
    assert sens[:, :, 0].std() > 0  # lipschitz_incr_t0 varies across operators


def test_sensitivity_on_known_operators():
    """A noise-free operator: two noise draws agree (noise_share 0) and the Jacobian norm bounds the
    finite-difference Lipschitz estimate of G at the same state."""
    spec = OperatorSpec(num_layers=1, base_channels=4, kernel_size=3, grid_size=16, normalization="none",
                        activation="leaky_relu", noise_scale=0.0, dropout_rate=0.0, dt=0.1)
    op = build_operator(spec, root_seed=0, index=0, num_steps=5)
    g = torch.Generator().manual_seed(0)
    r = rollout(op, torch.randn(3, 16, 16, generator=g), realizations=2, num_timesteps=6, root_seed=0, index=0,
                divergence_threshold=1e9)
    s = sensitivity_features(op, r.trajectory, root_seed=0, index=0).numpy()
    assert np.isfinite(s).all()
    # noise-free: two noise draws give the same step -> noise_share 0
    np.testing.assert_allclose(s[:, 7], 0.0, atol=1e-6)
    # Jacobian norm >= each finite-difference Lipschitz estimate of G at the same state (power iteration bound)
    assert (s[:, 8] >= s[:, 2] - 0.05).all()


def test_storage_layout_and_seed_snippets(write_config, tmp_path):
    cfg = load_experiment(write_config(features={"summary": {"extract_operator_features": False}, "initial": {"enabled": True}}))
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    write_parameters(cfg, paths)
    stages = ["initial_conditions", "rollouts", "features_summary", "features_temporal", "features_architecture", "features_initial"]
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        simulate_shard(cfg, paths, s, families={"summary", "temporal"})
        write_feature_family(cfg, paths, s, "architecture")
        write_feature_family(cfg, paths, s, "initial")
    consolidate(cfg, paths, stages)
    n, t, p = cfg.sampling.total_samples, cfg.simulation.num_timesteps, cfg.parameter_space.dim
    with h5py.File(paths.dataset, "r") as f:  # the seed's snippet
        summary = f["features/summary/aggregated/features"][:]
        temporal = f["features/temporal/features"][:]
        architecture = f["features/architecture/aggregated/features"][:]
        ic_types = f["metadata/ic_types"][:].astype(str)
        per_traj = f["features/summary/per_trajectory/features"][:]
        assert [x.decode() if isinstance(x, bytes) else x for x in f["features/temporal/features"].attrs["feature_names"]] == list(TEMPORAL_NAMES)
        assert f["features/summary/aggregated/features"].attrs["version"] == "1.1"
        assert f["features/initial/features"].shape == (n, 42)
    assert summary.shape == (n, 360) and temporal.shape == (n, t, 63) and architecture.shape == (n, p) and per_traj.shape == (n, 2, 120)
    structured_idx = np.where(ic_types == "structured")[0]
    assert (ic_types_for(cfg, structured_idx) == "structured").all()
    mean_features = per_traj.mean(axis=1)
    np.testing.assert_allclose(mean_features[:, :110], summary[:, :110], rtol=1e-4, atol=1e-5)
    assert architecture.min() >= 0 and architecture.max() <= 1


def test_feature_report_flags_undocumented_nan_and_constants(tiny_config):
    names = feature_names("temporal", tiny_config)[PATHS.TEMPORAL]
    x = np.random.default_rng(0).normal(size=(10, tiny_config.simulation.num_timesteps, 63)).astype(np.float32)
    x[3, 2, 5] = np.nan
    x[:, :, 7] = 1.5
    x[0, 0, 19] = 2.0  # band_frac_0 outside [0, 1]
    r = feature_report(PATHS.TEMPORAL, x, names, tiny_config)
    assert r.undocumented_nan == {names[5]: 1} and not r.nan_ok
    assert names[7] in r.unexpected_constant
    assert "band_frac_0" in r.range_violations


@pytest.mark.parametrize("family", ["summary"])
def test_rollout_families_rejected_outside_loop(tiny_config, tmp_path, family):
    with pytest.raises(ValueError, match="computed inside the rollout loop"):
        write_feature_family(tiny_config, ExperimentPaths.for_config(tiny_config, tmp_path), 0, family)


def test_jacobian_norm_matches_exact_spectral_norm():
    """Power iteration (central-difference JVP + exact VJP) converges to the 2-norm of the full Jacobian."""
    from torch.func import jacrev

    import spinlock_core.features.sensitivity as S
    from spinlock_core.rng import DRAW_A, DrawKey

    spec = OperatorSpec(num_layers=2, base_channels=4, kernel_size=3, grid_size=8, noise_scale=0.05, dropout_rate=0.1, dt=0.1)
    op = build_operator(spec, root_seed=0, index=0)
    u = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    step_map = S._StepMap(op, 0, DrawKey.for_operator(0, 0, 2, stage="sensitivity").at_step(DRAW_A))
    est = S._spectral_norm(step_map.G, u, torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), iters=30)
    for m in range(2):
        def g_m(x, m=m):
            return step_map.G(torch.cat([u[:m], x[None], u[m + 1:]]))[m]

        jac = jacrev(g_m)(u[m]).reshape(192, 192).double()
        assert est[m].item() == pytest.approx(torch.linalg.matrix_norm(jac, 2).item(), rel=1e-3)


@pytest.mark.parametrize("timesteps", [1, 2])
def test_short_trajectories_give_only_documented_nan(write_config, tmp_path, timesteps):
    """T = 1 (the 10k-baseline shape) and T = 2: the pipeline runs; NaN only where documented."""
    cfg = load_experiment(write_config(simulation__num_timesteps=timesteps,
                                       features={"summary": {"extract_operator_features": True}}))
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    write_parameters(cfg, paths)
    write_initial_conditions(cfg, paths, 0)
    res = simulate_shard(cfg, paths, 0, families={"summary", "temporal"})
    for fam, stage in (("summary", "features_summary"), ("temporal", "features_temporal")):
        for path, names in feature_names(fam, cfg).items():
            report = feature_report(path, res.features[stage][path], names, cfg)
            assert report.nan_ok, (path, report.undocumented_nan, report.inf_per_feature)
    agg = res.features["features_summary"][PATHS.SUMMARY_AGG]
    assert np.isnan(agg).any() and np.isfinite(agg[:, [SUMMARY_NAMES.index("std_final")]]).all()
