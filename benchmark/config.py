"""Resolving a frozen config dataclass from defaults, a named preset, a run file and overrides.

Order, later wins: the dataclass defaults; the preset (``smoke`` or ``paper``); the preset's
refinement for the dataset, if the class has one; the run file's section (TOML); ``--set
section.field=value`` overrides. Every value is checked against the field's type (``Literal`` option
sets included); unknown fields are errors that name the valid ones. No class paths, no
interpolation, nothing evaluated: TOML values and overrides are data.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value, field or file that does not fit the dataclass."""


def read_run_file(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"run file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"run file {p}: {exc}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["model.hidden=64", "task.n_samples=100"]`` -> ``{"model": {"hidden": 64}, "task": {...}}``.

    A value is parsed as a TOML value when it is one (numbers, booleans, strings in quotes, arrays),
    else kept as a plain string.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(f"--set {item!r}: expected section.field=value (e.g. model.hidden_dim=64)")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(section, {})[name] = value
    return out


def _check(name: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(repr, get_args(hint)))}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        args = get_args(hint)
        # TOML has no null: on the command line and in run files an optional field takes "none"
        # (or "null") for None, unless the field also takes strings
        if type(None) in args and str not in args and isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: {value!r} does not fit {hint}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
            return tuple(_check(name, v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        items = [_check(name, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type[C], values: Mapping[str, Any], where: str = "config") -> C:
    """Instantiate the frozen dataclass ``cls`` from ``values``, checking names and types."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown field {key!r}.{hint} Fields: {', '.join(fields)}")
        kwargs[key] = _check(f"{where}.{key}", value, hints[key])
    return cls(**kwargs)


def resolve(
    cls: type[C],
    preset: str | None = None,
    dataset: str | None = None,
    section: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    where: str = "model",
) -> C:
    """The config of ``cls`` for a preset and dataset, a run-file section and ``--set`` overrides."""
    values: dict[str, Any] = {}
    presets: dict[str, dict[str, Any]] = getattr(cls, "presets", {}) or {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"{where}: unknown preset {preset!r}; presets: {', '.join(presets) or '(none)'}")
        values.update(presets[preset])
        per_dataset = (getattr(cls, "dataset_presets", {}) or {}).get(preset, {})
        if dataset is not None and dataset in per_dataset:
            values.update(per_dataset[dataset])
    values.update(section or {})
    values.update(overrides or {})
    return build(cls, values, where)


def to_jsonable(config: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
