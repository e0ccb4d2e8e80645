"""G operators of one architecture applied as one: stacked weights, grouped convolutions.

A rollout on a GPU that applies one small operator per launch leaves the device idle (a 64x64
field with M = 5 is a few microseconds of work per kernel). :class:`GroupedOperator` stacks the
weights of G operators that share an architecture :func:`signature` and applies all of them in
one call per layer: the state of the group is ``[M, G*C, H, W]`` (operator ``g`` owns channels
``[g*C, (g+1)*C)``), every convolution is one ``conv2d(groups=G)`` (or, with
``method="vmap"``, ``torch.func.vmap`` over the operators, which lowers to the same kernel),
instance norm is per (sample, channel) as before and layer norm becomes ``group_norm`` with G
groups, so no operator ever sees another's channels. What differs per operator (dropout rate,
noise scale, schedule, distribution, spatial correlation, ``dt``, ``alpha``) is a tensor, and
every draw is made with the operator's own :class:`~spinlock_core.rng.DrawKey`, so operator
``g`` receives exactly the noise and masks it receives alone.

The result equals applying each operator alone up to float32 rounding of the convolution's
summation order (tests/core/test_grouped_rollout.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F

from ..rng import NOISE, DrawKey, dropout_stream, keep_mask_keys, unit_noise_keys
from .blocks import make_activation
from .cnn import RandomCNNOperator
from .noise import NOISE_TYPES, schedule_factor
from .policies import POLICIES
from .spec import OperatorSpec

__all__ = ["SIGNATURE_FIELDS", "signature", "group_by_signature", "GroupedOperator", "METHODS"]

#: what must be equal for operators to share one grouped call (the architecture, and the policy)
SIGNATURE_FIELDS = (
    "num_layers", "base_channels", "kernel_size", "activation", "normalization", "padding_mode",
    "update_policy", "channels", "grid_size",
)
METHODS = ("grouped_conv", "vmap")


def signature(spec: OperatorSpec) -> tuple:
    """The values of :data:`SIGNATURE_FIELDS` of ``spec``: operators with equal signatures can be
    rolled out in one group."""
    return tuple(getattr(spec, f) for f in SIGNATURE_FIELDS)


def group_by_signature(specs: Sequence[OperatorSpec], max_group: int) -> list[list[int]]:
    """Positions of ``specs`` grouped by :func:`signature`, each group at most ``max_group`` long.

    Groups come in order of their first member, members in their original order, so the plan
    depends only on the specs (never on the device or the process).

    Raises:
        ValueError: ``max_group < 1``.
    """
    if max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    by_sig: OrderedDict[tuple, list[int]] = OrderedDict()
    for i, s in enumerate(specs):
        by_sig.setdefault(signature(s), []).append(i)
    return [members[k : k + max_group] for members in by_sig.values() for k in range(0, len(members), max_group)]


class _GroupedConv:
    """``G`` convolutions of equal shape as one: weight ``[G*C_out, C_in, k, k]``."""

    def __init__(self, convs: list[torch.nn.Conv2d], method: str):
        c = convs[0]
        self.groups = len(convs)
        self.weight = torch.cat([x.weight.detach() for x in convs])
        self.bias = None if c.bias is None else torch.cat([x.bias.detach() for x in convs])
        self.pad = c.kernel_size[0] // 2
        self.padding_mode = c.padding_mode
        self.c_in, self.c_out = c.in_channels, c.out_channels
        self.method = method

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, G*C_in, H, W] -> [M, G*C_out, H, W]``; padding as ``nn.Conv2d`` applies it."""
        if self.padding_mode == "zeros":
            padding = self.pad
        else:
            x = F.pad(x, (self.pad,) * 4, mode=self.padding_mode)
            padding = 0
        if self.method == "grouped_conv":
            return F.conv2d(x, self.weight, self.bias, padding=padding, groups=self.groups)
        g, m = self.groups, x.shape[0]
        xs = x.reshape(m, g, self.c_in, *x.shape[-2:]).transpose(0, 1)  # [G, M, C_in, H, W]
        ws = self.weight.reshape(g, self.c_out, *self.weight.shape[1:])
        if self.bias is None:
            ys = torch.func.vmap(lambda xi, wi: F.conv2d(xi, wi, None, padding=padding))(xs, ws)
        else:
            bs = self.bias.reshape(g, self.c_out)
            ys = torch.func.vmap(lambda xi, wi, bi: F.conv2d(xi, wi, bi, padding=padding))(xs, ws, bs)
        return ys.transpose(0, 1).reshape(m, g * self.c_out, *ys.shape[-2:])


class _GroupedBlock:
    """conv -> norm -> activation -> dropout (-> residual) of G conv blocks at once."""

    def __init__(self, blocks: list, method: str, activation: str, normalization: str):
        self.g = len(blocks)
        self.conv = _GroupedConv([b.conv for b in blocks], method)
        self.normalization = normalization
        if normalization in ("instance", "layer"):
            self.norm_weight = torch.cat([b.norm.weight.detach() for b in blocks])
            self.norm_bias = torch.cat([b.norm.bias.detach() for b in blocks])
            self.eps = blocks[0].norm.eps
        self.act = make_activation(activation)
        self.residual = blocks[0].residual
        self.rates = [float(b.dropout) for b in blocks]
        # the per-operator scale 1 / (1 - p) in float32, as seeded_dropout multiplies by it
        self.scales = torch.tensor([1.0 / (1.0 - p) if p > 0 else 1.0 for p in self.rates], dtype=torch.float32)

    def to(self, device) -> _GroupedBlock:
        for name in ("weight", "bias"):
            t = getattr(self.conv, name)
            if t is not None:
                setattr(self.conv, name, t.to(device))
        if self.normalization in ("instance", "layer"):
            self.norm_weight, self.norm_bias = self.norm_weight.to(device), self.norm_bias.to(device)
        self.scales = self.scales.to(device)
        return self

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> norm -> activation: the deterministic part (what ``compile`` compiles)."""
        h = self.conv(x)
        if self.normalization == "instance":
            h = F.instance_norm(h, weight=self.norm_weight, bias=self.norm_bias, eps=self.eps)
        elif self.normalization == "layer":
            h = F.group_norm(h, self.g, self.norm_weight, self.norm_bias, self.eps)
        return self.act(h)

    def __call__(self, x: torch.Tensor, keys: Sequence[DrawKey] | None, block: int) -> torch.Tensor:
        h = self.core(x)
        if keys is not None and any(p > 0 for p in self.rates):
            h = self._dropout(h, keys, block)
        return x + h if self.residual else h

    def _dropout(self, h: torch.Tensor, keys: Sequence[DrawKey], block: int) -> torch.Tensor:
        """Operator ``g``'s rows of ``h [M, G*C, H, W]`` times its own keep mask and ``1/(1-p_g)``
        (operators with ``p_g = 0`` keep everything, as :func:`~.blocks.seeded_dropout`)."""
        m, gc, hh, ww = h.shape
        c = gc // self.g
        live = [i for i, p in enumerate(self.rates) if p > 0]
        keep = keep_mask_keys(
            [keys[i] for i in live], dropout_stream(block), (c, hh, ww), [self.rates[i] for i in live], device=h.device
        )  # [L, M, C, H, W]
        factor = torch.ones(self.g, m, c, hh, ww, device=h.device, dtype=torch.float32)
        factor[live] = keep.float() * self.scales[live].view(-1, 1, 1, 1, 1)
        # in float32 and rounded once, as a reduced-precision h * keep * scale is evaluated
        return (h.float() * factor.transpose(0, 1).reshape(m, gc, hh, ww)).to(h.dtype)


class GroupedOperator:
    """Operators ``ops`` (equal :func:`signature`) applied as one.

    ``forward(u [M, G*C, H, W], step, keys)`` equals ``torch.cat([ops[g](u_g, step, keys[g])],
    dim=1)`` (``u_g`` operator ``g``'s channels) to float32 rounding; ``keys=None`` applies the
    deterministic operators (no noise, no dropout).

    Raises:
        ValueError: no operators, unequal signatures, unknown ``method``.
    """

    def __init__(self, ops: Sequence[RandomCNNOperator], *, method: str = "grouped_conv"):
        ops = list(ops)
        if not ops:
            raise ValueError("GroupedOperator needs at least one operator")
        if method not in METHODS:
            raise ValueError(f"simulation.batching.method: unknown {method!r}; known: {METHODS}")
        sig = signature(ops[0].spec)
        for op in ops[1:]:
            if signature(op.spec) != sig:
                raise ValueError(
                    f"operators of one group must share the signature {dict(zip(SIGNATURE_FIELDS, sig))}, "
                    f"got {dict(zip(SIGNATURE_FIELDS, signature(op.spec)))}"
                )
        s0 = ops[0].spec
        if s0.update_policy not in POLICIES:
            raise ValueError(f"update_policy: unknown {s0.update_policy!r}; known: {POLICIES}")
        for op in ops:
            if op.spec.noise_type not in NOISE_TYPES:
                raise ValueError(f"noise_type: unknown {op.spec.noise_type!r}; known: {NOISE_TYPES}")
            schedule_factor(op.spec.noise_schedule, 0, 1, 2)  # validates the schedule name
        self.ops = ops
        self.specs = [op.spec for op in ops]
        self.g = len(ops)
        self.channels = s0.channels
        self.policy = s0.update_policy
        self.device = next(ops[0].parameters()).device
        common = dict(method=method, activation=s0.activation, normalization=s0.normalization)
        self.blocks = [_GroupedBlock([op.input_block for op in ops], **common).to(self.device)]
        for b in range(len(ops[0].blocks)):
            self.blocks.append(_GroupedBlock([op.blocks[b] for op in ops], **common).to(self.device))
        self.head = _GroupedConv([op.head for op in ops], method)
        self.num_steps = [op.num_steps for op in ops]
        self.noise_period = [op.noise_period for op in ops]
        # the policy's coefficients per operator, as float32 [1, G*C, 1, 1]: the same float32
        # values that apply_policy's Python floats become
        f32 = dict(device=self.device, dtype=torch.float32)
        dt = [s.dt for s in self.specs]
        alpha = [s.alpha for s in self.specs]
        self.dt = torch.tensor(dt, **f32).repeat_interleave(self.channels).view(1, -1, 1, 1)
        self.alpha = torch.tensor(alpha, **f32).repeat_interleave(self.channels).view(1, -1, 1, 1)
        self.one_minus_alpha = torch.tensor([1.0 - a for a in alpha], **f32).repeat_interleave(self.channels).view(1, -1, 1, 1)

    def compile(self, mode: str) -> None:
        """Compile every block's conv -> norm -> activation and the head with ``torch.compile``
        (``mode`` ``torch_compile``), or with CUDA graphs as well (``cuda_graphs``: inductor's
        ``reduce-overhead``; each output is cloned before the next replay may overwrite it). The
        draws (noise, dropout masks) stay eager, so the keys never become graph constants.

        Raises:
            ValueError: unknown ``mode``; ``cuda_graphs`` off CUDA.
        """
        if mode not in ("torch_compile", "cuda_graphs"):
            raise ValueError(f"simulation.batching.compile: unknown {mode!r}; known: none, torch_compile, cuda_graphs")
        if mode == "cuda_graphs" and self.device.type != "cuda":
            raise ValueError(f"simulation.batching.compile: cuda_graphs needs a CUDA device, running on {self.device}")
        opts = {"dynamic": False, "mode": "reduce-overhead" if mode == "cuda_graphs" else "default"}

        def wrap(fn):
            compiled = torch.compile(fn, **opts)
            if mode != "cuda_graphs":
                return compiled
            return lambda x: compiled(x).clone()

        for blk in self.blocks:
            blk.core = wrap(blk.core)
        self.head = wrap(self.head)

    def __call__(self, u: torch.Tensor, step: int = 0, keys: Sequence[DrawKey] | None = None) -> torch.Tensor:
        """``u [M, G*C, H, W] -> O(u) [M, G*C, H, W]`` at operator application ``step``."""
        if u.ndim != 4 or u.shape[1] != self.g * self.channels:
            raise ValueError(f"u must be [M, {self.g * self.channels}, H, W], got {tuple(u.shape)}")
        if keys is not None:
            keys = list(keys)
            if len(keys) != self.g:
                raise ValueError(f"{len(keys)} keys for a group of {self.g} operators")
            for k in keys:
                if len(k.realizations) != u.shape[0]:
                    raise ValueError(f"key has {len(k.realizations)} realizations for a batch of {u.shape[0]}")
        h = u
        for block, blk in enumerate(self.blocks):
            h = blk(h, keys, block)
        if keys is not None:
            h = self._add_noise(h, step, keys)
        return self.head(h)

    def _add_noise(self, h: torch.Tensor, step: int, keys: list[DrawKey]) -> torch.Tensor:
        """``h + amp_g eps_g`` on operator ``g``'s channels, ``amp_g`` its scale times its schedule
        at ``step`` and ``eps_g`` its own draw (:func:`~.noise.draw_noise`); nothing added where
        ``amp_g = 0``."""
        amps = [
            s.noise_scale * schedule_factor(s.noise_schedule, step, n, p) if s.noise_scale > 0 else 0.0
            for s, n, p in zip(self.specs, self.num_steps, self.noise_period)
        ]
        live = [i for i, a in enumerate(amps) if a != 0.0]
        if not live:
            return h
        m, gc, hh, ww = h.shape
        c = gc // self.g
        eps = torch.empty(len(live), m, c, hh, ww, device=h.device, dtype=torch.float32)
        for kind in sorted({self.specs[i].noise_type for i in live}):
            rows = [j for j, i in enumerate(live) if self.specs[i].noise_type == kind]
            eps[rows] = unit_noise_keys([keys[live[j]] for j in rows], NOISE, (c, hh, ww), kind, device=h.device)
        # eps in h's dtype before and after the filter, as draw_noise gives it (a bfloat16 operator
        # filters its bfloat16-rounded draw), the product rounded once, as amp * eps is
        eps = _correlate_many(eps.to(h.dtype), [self.specs[i].spatial_correlation for i in live])
        amp = torch.tensor([amps[i] for i in live], device=h.device, dtype=torch.float32)
        noise = torch.zeros(self.g, m, c, hh, ww, device=h.device, dtype=h.dtype)
        noise[live] = (amp.view(-1, 1, 1, 1, 1) * eps.float()).to(h.dtype)
        return h + noise.transpose(0, 1).reshape(m, gc, hh, ww)

    def apply_policy(self, u: torch.Tensor, ou: torch.Tensor) -> torch.Tensor:
        """The shared evolution policy with each operator's ``dt`` / ``alpha`` (see
        :func:`~.policies.apply_policy`); ``[M, G*C, H, W]``."""
        if self.policy == "residual":
            return u + self.dt * ou
        if self.policy == "convex":
            return self.alpha * u + self.one_minus_alpha * ou
        return ou


def _correlate_many(eps: torch.Tensor, rhos: list[float]) -> torch.Tensor:
    """:func:`~.noise.correlate` of ``eps [L, M, C, H, W]`` with width ``rhos[l]`` for row ``l``
    (rows with ``rho = 0`` unchanged), the filtered rows in one batched FFT."""
    rows = [i for i, r in enumerate(rhos) if r > 0]
    if not rows:
        return eps
    h, w = eps.shape[-2:]
    ky = torch.fft.fftfreq(h, device=eps.device)
    kx = torch.fft.rfftfreq(w, device=eps.device)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    coef = torch.tensor([-2 * math.pi**2 * (rhos[i] * h) ** 2 for i in rows], device=eps.device, dtype=k2.dtype)
    filt = torch.exp(coef.view(-1, 1, 1, 1, 1) * k2)
    sub = eps[rows].float()
    out = torch.fft.irfft2(torch.fft.rfft2(sub) * filt, s=(h, w))
    out = out - out.mean(dim=(-2, -1), keepdim=True)
    out = out / out.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    eps = eps.clone()
    eps[rows] = out.to(eps.dtype)
    return eps
