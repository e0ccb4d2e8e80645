"""Validators that report every problem they find, not only the first.

A validator collects :func:`problem` entries (a location relative to the model, and a reason) and
ends with :func:`raise_problems`. The entries leave as one ``pydantic.ValidationError`` with one
error each; pydantic prefixes every location with the model's own place in the config, so
:func:`spinlock_core.config.load_experiment` reports ``FILE: field.path: reason`` for each problem
of a file in one run, and a model built in code raises the same ``ValidationError`` (a
``ValueError``) listing them all.

Raising (rather than recording problems and returning) keeps one invariant: a parent validator
only ever runs on children that validated, so it never has to guard against a broken child.
Checks therefore live at the narrowest level that has their inputs (a field, one parameter, one
section): problems in different fields are then all reported, whatever else fails.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["PROBLEM_TYPE", "Loc", "problem", "relocated", "raise_problems"]

#: pydantic error ``type`` of the problems reported here (the message is the reason, verbatim)
PROBLEM_TYPE = "config_problem"

Loc = tuple[str | int, ...]


def problem(loc: Loc | str | int, reason: str, value: Any = None) -> InitErrorDetails:
    """One problem at ``loc`` (relative to the validated model; ``()`` for the model itself)."""
    if not isinstance(loc, tuple):
        loc = (loc,)
    return InitErrorDetails(
        type=PydanticCustomError(PROBLEM_TYPE, "{reason}", {"reason": reason}), loc=loc, input=value
    )


def relocated(err: ValidationError, prefix: Loc = ()) -> list[InitErrorDetails]:
    """The errors of ``err`` with ``prefix`` put in front of their locations (type and message kept)."""
    out = []
    for e in err.errors():
        ctx = e.get("ctx")
        reason = ctx["reason"] if e["type"] == PROBLEM_TYPE and ctx and "reason" in ctx else e["msg"]
        out.append(InitErrorDetails(type=PydanticCustomError(e["type"], reason), loc=(*prefix, *e["loc"]), input=e.get("input")))
    return out


def raise_problems(title: str, problems: list[InitErrorDetails]) -> None:
    """Raise one ``ValidationError`` listing ``problems``; return when there are none."""
    if problems:
        raise ValidationError.from_exception_data(title, problems)
