"""Name -> generator, and resolution of config variants (``gaussian_random_field_v3``, ...).

Adding an IC type: a new module defining a generator instance, plus one line in ``IC_GENERATORS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from .base import ICGenerator
from .gaussian_random_field import gaussian_random_field
from .localized import localized
from .multiscale_grf import multiscale_grf
from .structured import structured

__all__ = ["IC_GENERATORS", "UnknownICTypeError", "resolve_base", "resolve_variant", "validate_params", "generate_ic"]

IC_GENERATORS: dict[str, ICGenerator] = {
    gaussian_random_field.name: gaussian_random_field,
    multiscale_grf.name: multiscale_grf,
    structured.name: structured,
    localized.name: localized,
}


class UnknownICTypeError(ValueError):
    """No registered generator fits a variant.

    ``variant`` is the config key; ``declared`` its block's ``type`` value, or None when the type
    was to be found from the name or the block's keys.
    """

    def __init__(self, message: str, variant: str, declared: str | None = None):
        super().__init__(message)
        self.variant = variant
        self.declared = declared


def _known() -> str:
    return ", ".join(sorted(IC_GENERATORS))


def _format_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e["loc"]).lstrip(".")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_params(generator: ICGenerator, block: Mapping[str, Any] | None, variant_name: str | None = None) -> BaseModel:
    """Validate a parameter block (None/{} -> defaults) with ``generator.params_model``.

    Raises:
        ValueError: ``"initial condition '<variant>': <field>: <reason>; ..."`` for every problem;
            unknown keys also list the allowed ones.
    """
    label = variant_name if variant_name is not None else generator.name
    try:
        return generator.params_model.model_validate(dict(block or {}))
    except ValidationError as e:
        msg = _format_errors(e)
        if any(x["type"] == "extra_forbidden" for x in e.errors()):
            msg += f" (allowed keys for {generator.name}: {', '.join(generator.params_model.model_fields)})"
        raise ValueError(f"initial condition {label!r}: {msg}") from None


def _base_from_name(variant_name: str) -> ICGenerator | None:
    matches = [n for n in IC_GENERATORS if variant_name == n or variant_name.startswith(n + "_")]
    return IC_GENERATORS[max(matches, key=len)] if matches else None


def _base_from_fields(variant_name: str, keys: set[str]) -> ICGenerator:
    fits = [g for g in IC_GENERATORS.values() if keys and keys <= set(g.params_model.model_fields)]
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        raise ValueError(
            f"initial condition {variant_name!r}: ambiguous type: keys {', '.join(sorted(keys))} fit "
            f"{', '.join(sorted(g.name for g in fits))}; add a 'type' key"
        )
    raise UnknownICTypeError(f"initial condition {variant_name!r}: unknown type; known types: {_known()}", variant_name)


def resolve_base(variant_name: str, block: Mapping[str, Any] | None) -> tuple[ICGenerator, dict[str, Any]]:
    """A variant's base generator and its parameter block without ``type`` (not yet validated).

    See :func:`resolve_variant` for how the base is found.

    Raises:
        UnknownICTypeError: no registered generator fits (a ``ValueError``).
        ValueError: empty name, non-mapping block, ambiguous type.
    """
    if not isinstance(variant_name, str) or not variant_name:
        raise ValueError(f"initial condition name must be a non-empty string, got {variant_name!r}")
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise ValueError(f"initial condition {variant_name!r}: block must be a mapping, got {type(block).__name__}")
    params = dict(block)
    if "type" in params:
        base = params.pop("type")
        if not isinstance(base, str) or base not in IC_GENERATORS:
            raise UnknownICTypeError(
                f"initial condition {variant_name!r}: unknown type {base!r}; known types: {_known()}", variant_name, base
            )
        return IC_GENERATORS[base], params
    return _base_from_name(variant_name) or _base_from_fields(variant_name, set(params)), params


def resolve_variant(variant_name: str, block: Mapping[str, Any] | None) -> tuple[ICGenerator, BaseModel]:
    """Find a variant's base generator and validate its parameter block.

    The base is taken from, in order: an explicit ``type`` key in ``block`` (removed before
    validation); the longest registered name equal to ``variant_name`` or followed in it by ``_``
    (``multiscale_grf_low`` -> ``multiscale_grf``); the unique generator whose parameters include
    every key of ``block``.

    Args:
        variant_name: the config key, e.g. ``"gaussian_random_field_v3"``.
        block: the variant's parameters; None or ``{}`` means the defaults.

    Returns:
        ``(generator, params)`` with ``params`` an instance of ``generator.params_model``.

    Raises:
        ValueError: empty name, non-mapping block, unknown (:class:`UnknownICTypeError`) or
            ambiguous type, invalid parameters; the message names the variant and, where there is
            one, the field.
    """
    generator, params = resolve_base(variant_name, block)
    return generator, validate_params(generator, params, variant_name)


def generate_ic(
    generator: ICGenerator | str,
    params: BaseModel | Mapping[str, Any] | None,
    grid_size: int,
    channels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one initial condition ``[C, H, W]`` (float32) from ``generator``.

    Args:
        generator: a generator or a registered base name.
        params: a ``generator.params_model`` instance, or a mapping / None validated against it.
        grid_size: ``H = W >= 4``.
        channels: ``C >= 1``.
        rng: the only source of randomness.

    Raises:
        ValueError: unknown generator name, invalid params, ``grid_size < 4`` or ``channels < 1``.
        TypeError: ``rng`` is not a ``numpy.random.Generator`` or params of another model.
    """
    if isinstance(generator, str):
        if generator not in IC_GENERATORS:
            raise ValueError(f"initial condition {generator!r}: unknown type; known types: {_known()}")
        generator = IC_GENERATORS[generator]
    if params is None or isinstance(params, Mapping):
        params = validate_params(generator, params)
    return generator.generate(params, grid_size, channels, rng)
