"""Stage 3: roll out every operator of a shard, handing each batch of trajectories to consumers.

Trajectories are produced batch by batch (``sampling.batch_size`` operators) and dropped once the
consumers (feature extractors) have seen them, so peak memory does not grow with the shard or
the experiment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from ..config.experiment import ExperimentConfig
from ..devices import resolve_device, resolve_dtype
from ..operators import OperatorSpec, build_operator, noise_regime, operator_spec
from ..operators.grouped import GroupedOperator
from ..rollout import RolloutResult, rollout, rollout_group
from ..sampling import decode_row
from .grouping import plan_groups

__all__ = ["BatchConsumer", "ShardSimulation", "operator_specs", "simulate_operators"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class BatchConsumer(Protocol):
    """Receives each batch: global ``indices [B]``, ``trajectories [B, M, T, C, H, W]`` (on the
    simulation device), the operators and their specs."""

    def __call__(self, indices: np.ndarray, trajectories: torch.Tensor, operators: list, specs: list[OperatorSpec]) -> None: ...


@dataclass
class ShardSimulation:
    indices: np.ndarray
    specs: list[OperatorSpec]
    diverged: np.ndarray
    valid_states: np.ndarray
    #: ``[n, M, T, C, H, W]`` when trajectories are kept, else None
    trajectories: np.ndarray | None
    device: str
    seconds_rollout: float = 0.0
    seconds_consumers: float = 0.0
    operator_steps: int = 0
    conv_flops: float = 0.0
    timings: dict = field(default_factory=dict)

    def rollout_arrays(self) -> dict[str, np.ndarray]:
        """The ``rollouts`` stage datasets (see :mod:`spinlock_core.storage.layout`)."""
        from ..storage.layout import PATHS, encode_strings

        out = {
            PATHS.POLICIES: encode_strings([s.update_policy for s in self.specs]),
            PATHS.GRID_SIZES: np.asarray([s.grid_size for s in self.specs], dtype=np.int32),
            PATHS.NOISE_REGIMES: encode_strings([noise_regime(s.noise_scale) for s in self.specs]),
            PATHS.DIVERGED: self.diverged,
            PATHS.VALID_STATES: self.valid_states.astype(np.int32),
        }
        if self.trajectories is not None:
            out[PATHS.OUTPUT_FIELDS] = self.trajectories
        return out


def operator_specs(cfg: ExperimentConfig, unit: np.ndarray) -> list[OperatorSpec]:
    """Specs of the operators whose stored unit values are ``unit [n, P]``."""
    sim = cfg.simulation
    return [
        operator_spec(
            decode_row(row, cfg.parameter_space),
            grid_size=cfg.grid_size,
            channels=sim.num_channels,
            dt=sim.dt,
            alpha=sim.alpha,
        )
        for row in np.asarray(unit, dtype=np.float64)
    ]


def simulate_operators(
    cfg: ExperimentConfig,
    indices: np.ndarray,
    unit: np.ndarray,
    ics: np.ndarray,
    *,
    consumers: list[BatchConsumer] = (),
    device: str | None = None,
    keep_trajectories: bool | None = None,
    progress: Progress | None = None,
) -> ShardSimulation:
    """Roll out operators ``indices`` (unit values ``unit [n, P]``, ICs ``ics [n, C, H, W]``).

    Args:
        consumers: called once per batch of at most ``sampling.batch_size`` operators. With
            grouped rollouts (``simulation.batching``) a batch is a slice of one group: operators
            of one signature, not necessarily neighbours (consumers place them by ``indices``).
        device: overrides ``simulation.device``.
        keep_trajectories: defaults to ``dataset.storage.store_trajectories``.
        progress: ``progress(done, total)`` after each operator; by default a tqdm bar on stderr
            when it is a terminal (silent otherwise).
    """
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indices)
    if unit.shape[0] != n or ics.shape[0] != n:
        raise ValueError(f"indices, unit and ics disagree on n: {n}, {unit.shape[0]}, {ics.shape[0]}")
    sim = cfg.simulation
    dev = resolve_device(device or sim.device)
    amp = resolve_dtype(sim.precision, dev)
    keep = cfg.dataset.storage.store_trajectories if keep_trajectories is None else keep_trajectories
    specs = operator_specs(cfg, unit)
    M, T = sim.num_realizations, sim.num_timesteps
    diverged = np.zeros(n, dtype=bool)
    valid = np.full(n, T, dtype=np.int32)
    kept = np.empty((n, M, T, *ics.shape[1:]), dtype=np.float32) if keep else None
    result = ShardSimulation(indices, specs, diverged, valid, kept, str(dev))
    bar = None
    if progress is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="rollouts", unit="op", disable=None, leave=False)
        progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    plan = plan_groups(specs, sim.batching, dev, realizations=M, num_timesteps=T)
    result.timings["group_size"] = plan.group_size
    result.timings["groups"] = len(plan)
    if plan.group_size == 1:
        _loop_single(cfg, result, indices, ics, consumers, dev, amp, progress)
    else:
        log.info("rolling out %d operators in %d groups of at most %d", n, len(plan), plan.group_size)
        _loop_groups(cfg, result, plan.groups, indices, ics, consumers, dev, amp, progress)
    if bar is not None:
        bar.close()
    return result


def _record(cfg: ExperimentConfig, result: ShardSimulation, j: int, r: RolloutResult) -> None:
    """Operator at position ``j`` of the shard finished with ``r``."""
    sim = cfg.simulation
    M, T = sim.num_realizations, sim.num_timesteps
    result.diverged[j], result.valid_states[j] = r.diverged, r.valid_states
    if r.diverged:
        log.warning("operator %d diverged after %d of %d states", result.indices[j], r.valid_states, T)
    result.operator_steps += (r.valid_states - 1) * M
    result.conv_flops += result.specs[j].conv_flops(M) * (r.valid_states - 1)


def _build(cfg: ExperimentConfig, spec: OperatorSpec, index: int, dev: torch.device):
    sim = cfg.simulation
    return build_operator(
        spec, root_seed=cfg.root_seed, index=int(index), num_steps=max(sim.num_timesteps - 1, 1),
        noise_period=sim.noise_period, device=dev,
    )


def _consume(consumers, result: ShardSimulation, pos: np.ndarray, batch: torch.Tensor, ops: list) -> None:
    t1 = time.perf_counter()
    for consume in consumers:
        consume(result.indices[pos], batch, ops, [result.specs[j] for j in pos])
    result.seconds_consumers += time.perf_counter() - t1


def _loop_single(cfg, result: ShardSimulation, indices, ics, consumers, dev, amp, progress) -> None:
    """One operator per call (G = 1), consumers fed every ``sampling.batch_size`` operators."""
    sim = cfg.simulation
    M, T, n = sim.num_realizations, sim.num_timesteps, len(indices)
    bs = cfg.sampling.batch_size
    for b0 in range(0, n, bs):
        pos = np.arange(b0, min(b0 + bs, n))
        ops = []
        batch = torch.empty((len(pos), M, T, *ics.shape[1:]), device=dev, dtype=torch.float32)
        t0 = time.perf_counter()
        for k, j in enumerate(pos):
            op = _build(cfg, result.specs[j], indices[j], dev)
            r = rollout(
                op, torch.from_numpy(ics[j]), realizations=M, num_timesteps=T, root_seed=cfg.root_seed,
                index=int(indices[j]), divergence_threshold=sim.divergence_threshold, autocast_dtype=amp,
                out=batch[k],
            )
            _record(cfg, result, j, r)
            ops.append(op)
            if progress is not None:
                progress(j + 1, n)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        result.seconds_rollout += time.perf_counter() - t0
        if result.trajectories is not None:
            result.trajectories[pos] = batch.cpu().numpy()
        _consume(consumers, result, pos, batch, ops)
        del batch, ops


def _loop_groups(cfg, result: ShardSimulation, groups: list[list[int]], indices, ics, consumers, dev, amp, progress) -> None:
    """G operators of one signature per call (:func:`~spinlock_core.rollout.rollout_group`); the
    consumers see each group in slices of ``sampling.batch_size`` operators (views, no copies)."""
    sim = cfg.simulation
    M, T, n = sim.num_realizations, sim.num_timesteps, len(indices)
    bs = cfg.sampling.batch_size
    method = "grouped_conv" if sim.batching.method == "auto" else sim.batching.method
    done = 0
    for members in groups:
        pos = np.asarray(members, dtype=np.int64)
        t0 = time.perf_counter()
        ops = [_build(cfg, result.specs[j], indices[j], dev) for j in pos]
        group = GroupedOperator(ops, method=method)
        if sim.batching.compile != "none":
            group.compile(sim.batching.compile)
        buf = torch.empty((len(pos), M, T, *ics.shape[1:]), device=dev, dtype=torch.float32)
        rs = rollout_group(
            group, torch.from_numpy(ics[pos]), realizations=M, num_timesteps=T, root_seed=cfg.root_seed,
            indices=indices[pos].tolist(), divergence_threshold=sim.divergence_threshold, autocast_dtype=amp, out=buf,
        )
        for j, r in zip(pos, rs):
            _record(cfg, result, int(j), r)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        result.seconds_rollout += time.perf_counter() - t0
        done += len(pos)
        if progress is not None:
            progress(done, n)
        if result.trajectories is not None:
            result.trajectories[pos] = buf.cpu().numpy()
        for c0 in range(0, len(pos), bs):
            _consume(consumers, result, pos[c0 : c0 + bs], buf[c0 : c0 + bs], ops[c0 : c0 + bs])
        del buf, ops, group
