"""Load and validate YAML configs; a failure becomes one :class:`ConfigError` listing every problem
of the file, each with its field path (see :mod:`.problems` for how validators report several).

Two kinds of file: an experiment (:func:`load_experiment`) and a tokenizer config
(:func:`load_tokenizer_config`); :func:`load_config` tells them apart by their top-level keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .experiment import ExperimentConfig
from .tokenizer import TokenizerConfig

__all__ = [
    "ConfigError",
    "REPO_ROOT",
    "load_config",
    "load_experiment",
    "load_tokenizer_config",
    "load_yaml_model",
    "format_validation_error",
    "resolve_config_path",
]

#: the checkout holding ``configs/`` (paths named inside a config fall back to it)
REPO_ROOT = Path(__file__).resolve().parents[2]
#: a file with any of these top-level keys and none of :data:`EXPERIMENT_KEYS` is a tokenizer config
TOKENIZER_KEYS = frozenset({"families", "cleaning", "model", "training"})
EXPERIMENT_KEYS = frozenset({"metadata", "parameter_space", "sampling", "simulation", "dataset", "features"})

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


def _validate(path: Path, data: dict, model: type[M]) -> M:
    try:
        # ``source``: the file, for paths named inside it (e.g. the experiment's tokenizer config)
        return model.model_validate(data, context={"source": path})
    except ValidationError as e:
        raise ConfigError(path, format_validation_error(e)) from None
    except ValueError as e:  # raised by nested resolvers outside pydantic's wrapping
        raise ConfigError(path, [("", str(e))]) from None


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Read ``path`` and validate it as ``model``.

    Raises:
        ConfigError: missing/unreadable file, malformed YAML or invalid content; ``problems``
            lists every problem found, each as ``(field.path, reason)``.
    """
    path = Path(path)
    return _validate(path, _read_yaml(path), model)


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Load an experiment YAML (see :class:`ExperimentConfig`)."""
    return load_yaml_model(path, ExperimentConfig)


def load_tokenizer_config(path: str | Path) -> TokenizerConfig:
    """Load a tokenizer YAML (see :class:`TokenizerConfig`); raises :class:`ConfigError`."""
    return load_yaml_model(path, TokenizerConfig)


def config_kind(data: dict[str, Any]) -> str:
    """``"tokenizer"`` for a mapping with tokenizer sections (``families``, ``cleaning``, ``model``,
    ``training``) and no experiment section, else ``"experiment"``."""
    keys = set(data)
    return "tokenizer" if keys & TOKENIZER_KEYS and not keys & EXPERIMENT_KEYS else "experiment"


def load_config(path: str | Path) -> ExperimentConfig | TokenizerConfig:
    """Load an experiment or a tokenizer YAML, told apart by :func:`config_kind`."""
    path = Path(path)
    data = _read_yaml(path)
    model = TokenizerConfig if config_kind(data) == "tokenizer" else ExperimentConfig
    return _validate(path, data, model)


def resolve_config_path(name: str | Path, source: Path | None) -> tuple[Path | None, list[Path]]:
    """Find a file named inside a config: as given when absolute, else relative to ``source``'s
    folder (the working directory when there is no source file), then to :data:`REPO_ROOT`.

    Returns ``(path or None, the candidates tried)``.
    """
    name = Path(name).expanduser()
    if name.is_absolute():
        tried = [name]
    else:
        base = source.parent if source is not None else Path.cwd()
        tried = list(dict.fromkeys([(base / name).resolve(), (REPO_ROOT / name).resolve()]))
    return next((p for p in tried if p.is_file()), None), tried
