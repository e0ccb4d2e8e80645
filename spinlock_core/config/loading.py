"""Load and validate YAML configs; a failure becomes one :class:`ConfigError` listing every problem
of the file, each with its field path (see :mod:`.problems` for how validators report several)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .experiment import ExperimentConfig

__all__ = ["ConfigError", "load_experiment", "load_yaml_model", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used. ``problems`` is ``[(field.path, reason), ...]``."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {loc}: {msg}" if loc else f"{self.path}: {msg}" for loc, msg in problems))


def _loc(loc: tuple) -> str:
    parts = []
    for item in loc:
        # pydantic puts the union tag (e.g. 'integer') and validator names into the location
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def format_validation_error(err: ValidationError) -> list[tuple[str, str]]:
    """``ValidationError`` -> ``[(field.path, reason)]``, one per error, with pydantic's noise removed."""
    out = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if x not in ("integer", "continuous", "choice", "boolean"))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        out.append((_loc(loc), msg))
    return out


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(path, [("", "file not found")])
    if not path.is_file():
        raise ConfigError(path, [("", "not a file")])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, [("", f"malformed YAML: {where}{problem}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, [("", "not a text file")]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, [("", f"top level must be a mapping, got {type(data).__name__}")])
    return data


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Read ``path`` and validate it as ``model``.

    Raises:
        ConfigError: missing/unreadable file, malformed YAML or invalid content; ``problems``
            lists every problem found, each as ``(field.path, reason)``.
    """
    path = Path(path)
    data = _read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(path, format_validation_error(e)) from None
    except ValueError as e:  # raised by nested resolvers outside pydantic's wrapping
        raise ConfigError(path, [("", str(e))]) from None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Load an experiment YAML (see :class:`ExperimentConfig`)."""
    return load_yaml_model(path, ExperimentConfig)
