"""Typed configs: dataclasses with the paper's values as defaults, named presets, YAML in and out.

A stage defines its own dataclass (nested dataclasses allowed) and a dict of named presets;
:func:`load_config` turns a preset name or a YAML file into an instance. A YAML file may start
from a preset with ``base: NAME`` and override any field. Unknown keys and wrong types are a
:class:`UserError` before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from grainforge.errors import UserError

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a YAML value to the dataclass field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type[T], data: dict, where: str, base: T | None = None) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        current = getattr(base, name) if base is not None else None
        if dataclasses.is_dataclass(hint) and isinstance(value, dict) and current is not None:
            values[name] = _from_dict(hint, value, f"{where}.{name}", base=current)
        else:
            values[name] = _coerce(value, hint, f"{where}.{name}")
    instance = dataclasses.replace(base, **values) if base is not None else cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def config_from_dict(cls: type[T], data: dict, where: str, base: T | None = None) -> T:
    """Build (or, with ``base``, override) a ``cls`` config from a plain dict, with the same checks as
    :func:`load_config`; ``where`` names the source in error messages."""
    return _from_dict(cls, data, where, base=base)


def load_config(cls: type[T], spec: str | os.PathLike, presets: dict[str, T]) -> T:
    """Build a ``cls`` config from a preset name or a YAML file (optionally ``base: PRESET``)."""
    spec_str = str(spec)
    if spec_str in presets:
        return presets[spec_str]
    path = Path(spec_str)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise UserError(f"unknown config {spec_str!r}; use one of {', '.join(presets)} or a .yaml file")
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level")
    base_name = data.pop("base", None)
    base = None
    if base_name is not None:
        if base_name not in presets:
            raise UserError(f"{path}: base {base_name!r} is not one of {', '.join(presets)}")
        base = presets[base_name]
    return _from_dict(cls, data, str(path), base=base)


def config_to_dict(config: Any) -> dict:
    """A plain dict (YAML/JSON-ready) of a dataclass config."""
    return dataclasses.asdict(config)


def changed_fields(cls: type[T], saved: dict, current: T, where: str) -> dict[str, tuple[Any, Any]]:
    """{field: (saved value, current value)} for every top-level field where ``current`` differs from the
    ``cls`` config saved as ``saved`` (a plain dict as written). A field the saved copy lacks takes its
    default, the behaviour before the field existed; a copy that no longer loads (a field since removed or
    renamed) is compared as written. ``where`` names the saved copy in load errors (not raised)."""
    try:
        before = config_to_dict(config_from_dict(cls, saved, where))
    except UserError:
        before = saved
    return {key: (before.get(key), value) for key, value in config_to_dict(current).items() if before.get(key) != value}


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write a config as YAML, atomically."""
    from grainforge.data.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
