"""Frozen, typed configs: validation, JSON round trips and ``key=value`` overrides.

Every model and the trainer take a frozen dataclass. Its fields are typed with ``int``, ``float``,
``bool``, ``str``, ``Literal[...]``, ``tuple[int, ...]`` or ``X | None``; :func:`validate` checks a
value against those types so a config can never hold a value its class does not allow, and
:func:`from_dict` / :func:`apply_overrides` turn JSON and command-line strings into configs with
errors that list the valid keys.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from genlab.errors import ConfigError, unknown

C = TypeVar("C")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check(name: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` (lists → tuples, ints → floats) or raise ConfigError."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ConfigError(f"{name}={value!r} is not allowed; choose one of {choices}.")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}={value!r} has the wrong type.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r} must be a list, e.g. {name}=[64,32].")
        args = get_args(hint)
        item = args[0] if args else Any
        return tuple(_check(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be true or false.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={value!r} must be an integer.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}={value!r} must be a number.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} must be a string.")
        return value
    return value


def validate(config: Any) -> None:
    """Check every field of a config dataclass against its type; call from ``__post_init__``.

    Lists become tuples and ints become floats where the field asks for them, so that
    ``from_dict(to_dict(c)) == c`` holds exactly.
    """
    for field in dataclasses.fields(config):
        hint = _hints(type(config))[field.name]
        value = _check(field.name, getattr(config, field.name), hint)
        object.__setattr__(config, field.name, value)  # normalising only: same value, canonical type


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Build ``cls`` from a mapping, rejecting unknown keys with the list of valid ones."""
    valid = field_names(cls)
    for key in data:
        if key not in valid:
            raise unknown(f"{cls.__name__} key", key, valid)
    return cls(**data)


def parse_value(text: str, hint: Any) -> Any:
    """Parse a command-line string for a field of type ``hint`` (JSON first, then a bare string)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        value = lowered == "true"
    elif lowered in ("none", "null"):
        value = None
    origin = get_origin(hint)
    if origin is tuple and isinstance(value, (int, float)):
        value = [value]
    if origin is tuple and isinstance(value, str):  # 64,32 without brackets
        value = [json.loads(part) for part in value.split(",") if part.strip()]
    if hint is str or (origin is Literal and all(isinstance(a, str) for a in get_args(hint))):
        value = text if not isinstance(value, str) else value
    return value


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """Split ``["a=1", "b=x"]`` into a dict, with a clear error for malformed items."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value (e.g. latent_dim=16).")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(configs: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``key=value`` strings to whichever config (by name) owns each key.

    ``configs`` maps a label ("model", "train") to a config instance; a key may be written bare
    (``lr=3e-4``) or qualified (``train.lr=3e-4``). Unknown keys raise with every valid key listed.
    """
    updates: dict[str, dict[str, Any]] = {label: {} for label in configs}
    all_keys = [f"{label}.{name}" for label, cfg in configs.items() for name in field_names(type(cfg))]
    for key, text in overrides.items():
        label, _, name = key.rpartition(".")
        owners = [lbl for lbl, cfg in configs.items() if name in field_names(type(cfg))]
        if label:
            owners = [lbl for lbl in owners if lbl == label]
        if not owners:
            bare = sorted({k.split(".", 1)[1] for k in all_keys})
            raise unknown("config key", key, bare, hint="Use key=value, e.g. latent_dim=16 lr=3e-4.")
        hint = _hints(type(configs[owners[0]]))[name]
        updates[owners[0]][name] = parse_value(text, hint)
    return {label: dataclasses.replace(cfg, **updates[label]) for label, cfg in configs.items()}
