"""Operator sensitivity: SUMMARY columns 110-119 (FEATURES.md), computed with the operator itself.

F is the full step map (operator, noise, dropout and policy) with one draw of noise and dropout
masks held fixed (draw ``a``, replayed for every evaluation); ``G(u) = F(u) - u``; ``O`` is the
operator alone (no noise, no dropout). ``delta`` is a Gaussian perturbation scaled to
``eps_rel * ||u||``; norms are over the whole state ``[C, H, W]`` of one realization;
``L_X(eps_rel) = ||X(u + delta) - X(u)|| / ||delta||``. All columns are computed for every
realization at once (the batch axis is the realization axis; realizations never mix).

Columns: 110-112 ``lipschitz_incr_t0/_tmid/_tend`` (log10 L_G(1e-2) at t = 0, T/2, T - 1),
113 ``lipschitz_op_t0`` (L_O(1e-2) ||u|| / (||O(u)|| + eps), t = 0), 114 ``lipschitz_op_tend``
(same at T - 1), 115 ``lipschitz_op_scaling`` (log(L_O(1e-1) / L_O(1e-3)) at t = 0),
116 ``curvature`` (||O(u+d) + O(u-d) - 2 O(u)|| / (2 ||O(u+d) - O(u)|| + eps), eps_rel = 1e-1, t = 0),
117 ``noise_share`` (||F_a(u) - F_b(u)|| / (||F_a(u) - u|| + eps), t = 0), 118 ``jacobian_norm``
(log10 of the largest singular value of J_G at T - 1, 8 power iterations on J^T J with a
Jacobian-vector product, here a central difference, then an exact vector-Jacobian product), 119 ``output_input_corr`` (Pearson correlation of
O(u) and u over the state, t = 0).
"""

from __future__ import annotations

import math

import torch

from ..operators.cnn import RandomCNNOperator
from ..operators.policies import apply_policy
from ..rng import DRAW_A, DRAW_B, PERTURBATION, POWER_START, DrawKey, unit_noise
from .summary import SENSITIVITY_NAMES

__all__ = ["SENSITIVITY_NAMES", "sensitivity_features"]


EPS = 1e-8


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Per-realization L2 norm of ``x [M, C, H, W]`` -> ``[M]`` (float64)."""
    return x.double().flatten(1).norm(dim=1)


class _StepMap:
    """F at application ``step`` (the noise schedule) with one fixed draw of noise and dropout
    masks per realization: the counter-based draws of ``key`` (stage "sensitivity", counter step
    ``DRAW_A`` or ``DRAW_B``), the same numbers at every call."""

    def __init__(self, op: RandomCNNOperator, step: int, key: DrawKey):
        self.op, self.step, self.key = op, step, key

    def F(self, u: torch.Tensor) -> torch.Tensor:
        s = self.op.spec
        return apply_policy(s.update_policy, u, self.op(u, self.step, self.key), dt=s.dt, alpha=s.alpha)

    def G(self, u: torch.Tensor) -> torch.Tensor:
        return self.F(u) - u


def _gaussian(key: DrawKey, stream: int, step: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normals shaped like ``like [M, C, H, W]``: counter step ``step`` of ``stream``."""
    return unit_noise(key.at_step(step), stream, tuple(like.shape[1:]), "gaussian", device=like.device).to(like.dtype)


def _delta(u: torch.Tensor, eps_rel: float, key: DrawKey, k: int) -> torch.Tensor:
    """Perturbation number ``k`` of ``u [M, C, H, W]``, scaled to ``eps_rel ||u||`` per realization."""
    d = _gaussian(key, PERTURBATION, k, u)
    scale = eps_rel * _norm(u) / _norm(d).clamp_min(1e-30)
    return d * scale.to(u.dtype).view(-1, 1, 1, 1)


def _lipschitz(fn, u: torch.Tensor, d: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    base = fn(u) if base is None else base
    return _norm(fn(u + d) - base) / _norm(d).clamp_min(1e-30)


def _spectral_norm(G, u: torch.Tensor, v0: torch.Tensor, iters: int = 8, h_rel: float = 1e-3) -> torch.Tensor:
    """Largest singular value of the Jacobian of ``G`` at ``u [M, C, H, W]``, per realization:
    ``iters`` power iterations on ``J^T J`` from the start vectors ``v0 [M, C, H, W]``. ``J v`` is
    a central difference ``(G(u + h v) - G(u - h v)) / 2h`` with ``h = h_rel ||u||``
    (forward-mode AD through conv is 20x a forward pass here; the central
    difference costs two and is accurate to O(h^2)); ``J^T w`` is an exact vector-Jacobian product
    from one reverse pass recorded once."""
    from torch.func import vjp

    v = v0 / _norm(v0).to(u.dtype).view(-1, 1, 1, 1).clamp_min(1e-30)
    h = (h_rel * _norm(u)).clamp_min(1e-6).to(u.dtype).view(-1, 1, 1, 1)
    sigma2 = torch.zeros(u.shape[0], dtype=torch.float64, device=u.device)
    _, pull = vjp(G, u)  # one forward for every vector-Jacobian product
    for _ in range(iters):
        with torch.no_grad():
            jv = (G(u + h * v) - G(u - h * v)) / (2 * h)
        (w,) = pull(jv)
        w = w.detach()
        sigma2 = _norm(w)  # ||J^T J v|| with ||v|| = 1 -> sigma^2 at convergence
        v = w / sigma2.to(u.dtype).view(-1, 1, 1, 1).clamp_min(1e-30)
    return sigma2.sqrt()


def sensitivity_features(op: RandomCNNOperator, trajectory: torch.Tensor, *, root_seed: int, index: int) -> torch.Tensor:
    """The 10 sensitivity columns of one operator.

    Args:
        op: the operator that produced ``trajectory`` (rebuilt or the one used in the rollout).
        trajectory: ``[M, T, C, H, W]``.
        root_seed, index: key the perturbations, the power iteration's start and the fixed draws
            of noise and dropout (counter-based, stage "sensitivity": stream table in
            :mod:`spinlock_core.rng.streams`), so the result depends on nothing else, device included.

    Returns:
        ``[M, 10]`` float32. With ``T = 1`` the columns at T/2 and T - 1 use state 0.
    """
    if trajectory.ndim != 5:
        raise ValueError(f"trajectory must be [M, T, C, H, W], got shape {tuple(trajectory.shape)}")
    m, t = trajectory.shape[:2]
    dev = trajectory.device
    key = DrawKey.for_operator(root_seed, index, m, stage="sensitivity")
    u0, umid, uend = trajectory[:, 0].float(), trajectory[:, t // 2].float(), trajectory[:, t - 1].float()
    out = torch.empty(m, 10, dtype=torch.float64, device=dev)

    def O(u):  # noqa: E743 - the operator alone
        return op(u, 0, None)

    with torch.no_grad():
        for j, (u, step) in enumerate(((u0, 0), (umid, t // 2), (uend, t - 1))):
            Fa = _StepMap(op, step, key.at_step(DRAW_A))
            out[:, j] = torch.log10(_lipschitz(Fa.G, u, _delta(u, 1e-2, key, j)))
        o0 = O(u0)
        l2 = _lipschitz(O, u0, _delta(u0, 1e-2, key, 3), o0)
        out[:, 3] = l2 * _norm(u0) / (_norm(o0) + EPS)
        oend = O(uend)
        out[:, 4] = _lipschitz(O, uend, _delta(uend, 1e-2, key, 4), oend) * _norm(uend) / (_norm(oend) + EPS)
        l1 = _lipschitz(O, u0, _delta(u0, 1e-1, key, 5), o0)
        l3 = _lipschitz(O, u0, _delta(u0, 1e-3, key, 6), o0)
        out[:, 5] = torch.log(l1 / l3)
        d = _delta(u0, 1e-1, key, 7)
        op_plus, op_minus = O(u0 + d), O(u0 - d)
        out[:, 6] = _norm(op_plus + op_minus - 2 * o0) / (2 * _norm(op_plus - o0) + EPS)
        Fa, Fb = _StepMap(op, 0, key.at_step(DRAW_A)), _StepMap(op, 0, key.at_step(DRAW_B))
        fa = Fa.F(u0)
        out[:, 7] = _norm(fa - Fb.F(u0)) / (_norm(fa - u0) + EPS)
        x, y = o0.double().flatten(1), u0.double().flatten(1)
        x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
        den = x.norm(dim=1) * y.norm(dim=1)
        out[:, 9] = torch.where(den > 1e-12 * (x.abs().amax(1) + y.abs().amax(1) + 1e-30), (x * y).sum(1) / den.clamp_min(1e-300), 0.0)
    Fend = _StepMap(op, t - 1, key.at_step(DRAW_A))
    with torch.enable_grad():
        sigma = _spectral_norm(Fend.G, uend.detach(), _gaussian(key, POWER_START, 0, uend))
    out[:, 8] = torch.log10(sigma.detach())
    # a failed estimate (an overflow, 0/0, or the log of a zero norm) is NaN, never a sentinel:
    # families.documented_nan allows it and the nan_inf check counts it. A zero state gets a zero
    # perturbation, so the ratios of columns 0-6 are 0/0 there (the norm floors would say 0)
    zero = torch.stack([_norm(x) == 0 for x in (u0, umid, uend)], dim=1)[:, [0, 1, 2, 0, 2, 0, 0]]
    out[:, :7] = torch.where(zero, math.nan, out[:, :7])
    # output_input_corr: an overflowed O(u) has no correlation (the degenerate-variance 0 would hide it)
    out[:, 9] = torch.where(torch.isfinite(o0).flatten(1).all(1), out[:, 9], math.nan)
    out = out.float()
    return torch.where(torch.isfinite(out), out, torch.full_like(out, math.nan))
