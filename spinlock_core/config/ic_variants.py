"""Checks of ``simulation.input_generation``: weights, variant names and variant blocks.

Each weighted name must resolve to a registered IC generator (from its block's ``type``, its name,
or its block's keys) with a valid block; each block must have a weight; each name must fit the
label layout of the HDF5 file. A misspelled name is reported as such (with the closest known type
or unweighted block), not through its consequences.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from pydantic import ValidationError

from .problems import problem, relocated

__all__ = ["LABEL_BYTES", "label_problem", "variant_problems"]

#: IC variant names are stored in ``metadata/ic_types`` as fixed-length ASCII of this many bytes
#: (``spinlock_core.storage.layout.STRING_DTYPE``, ``S40``)
LABEL_BYTES = 40


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be stored as an ``S40`` label, or None."""
    if not label:
        return "must be a non-empty name"
    if not label.isascii():
        return f"stored as a fixed-length ASCII label (S{LABEL_BYTES}), so it must be ASCII, got {label!r}"
    if len(label) > LABEL_BYTES:
        return f"stored as a fixed-length ASCII label of at most {LABEL_BYTES} bytes (S{LABEL_BYTES}), got {len(label)}"
    return None


def _closest(name: str, candidates: list[str]) -> str | None:
    hits = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return hits[0] if hits else None


def _block_problems(name: str, generator, params: dict[str, Any]) -> list:
    """The block's own errors, one per field, at ``NAME.field``."""
    try:
        generator.params_model.model_validate(params)
    except ValidationError as e:
        out = []
        allowed = ", ".join(generator.params_model.model_fields)
        for d in relocated(e, (name,)):
            if d["type"].type == "extra_forbidden":
                d = problem(d["loc"], f"unknown key for a {generator.name} block (allowed: {allowed})", d["input"])
            out.append(d)
        return out
    return []


def variant_problems(weights: dict[str, float], blocks: dict[str, Any]) -> list:
    """Every problem of ``ic_type_weights`` and the variant ``blocks``, locations relative to
    ``input_generation``."""
    from ..initial_conditions.registry import IC_GENERATORS, UnknownICTypeError, resolve_base

    out = []
    finite = True
    for name, w in weights.items():
        if not (math.isfinite(w) and w >= 0):
            out.append(problem(("ic_type_weights", name), f"weight must be finite and >= 0, got {w}", w))
            finite = False
        if reason := label_problem(name):
            out.append(problem(("ic_type_weights", name), reason, name))
    total = sum(weights.values())
    if finite and abs(total - 1.0) > 1e-6:
        out.append(problem("ic_type_weights", f"weights must sum to 1 (within 1e-6), got {total:.8g}", dict(weights)))

    orphans = [b for b in blocks if b not in weights]
    explained: set[str] = set()
    known = ", ".join(sorted(IC_GENERATORS))
    for name in weights:
        block = blocks.get(name)
        try:
            generator, params = resolve_base(name, block)
        except UnknownICTypeError as e:
            if e.declared is not None:
                guess = _closest(str(e.declared), list(IC_GENERATORS))
                hint = f"; did you mean {guess!r}?" if guess else ""
                out.append(problem((name, "type"), f"unknown IC type {e.declared!r}; known types: {known}{hint}", e.declared))
                continue
            guess = _closest(name, orphans + list(IC_GENERATORS))
            if guess in orphans:
                explained.add(guess)
                hint = f"; did you mean {guess!r} (a block of that name has no weight)?"
            else:
                hint = f"; did you mean {guess!r}?" if guess else ""
            how = (
                f"its block's keys ({', '.join(map(str, block))}) fit no type and it has no 'type' key"
                if block else "it has no block with a 'type' key or keys that identify one"
            )
            out.append(problem(("ic_type_weights", name), (
                f"unknown IC type {name!r}: the name is not a known type (nor one followed by '_<variant>'), "
                f"and {how}; known types: {known}{hint}"
            ), name))
            continue
        except ValueError as e:  # non-mapping block, ambiguous keys
            out.append(problem((name,), str(e), block))
            continue
        out += _block_problems(name, generator, params)
    for b in orphans:
        if b not in explained:
            out.append(problem((b,), "IC variant block has no entry in ic_type_weights (it would be ignored)", blocks[b]))
    return out
