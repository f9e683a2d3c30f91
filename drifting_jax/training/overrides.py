"""``--set key=value`` overrides of a run configuration, parsed with the field's declared type.

One parser for every task's configuration (:class:`~drifting_jax.training.config.RunConfig`
and its subclasses): values are Python
literals (``0.1``, ``true``, ``none``, ``{'depth': 2}``, ``(0.05, 0.2)``; strings may be bare)
coerced to the dataclass field's annotation — an int field rejects ``0.5``, a float field
rejects ``nan``/``inf``, a bool field anything but true/false — and ``dict_field.key=value``
sets one entry of a dict field.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import typing
from typing import Any

__all__ = ["apply", "coerce", "parse_literal"]


def parse_literal(text: str) -> Any:
  """A Python literal from ``--set`` text (``none``/``null``, ``true``/``false``, bare strings)."""
  low = text.strip().lower()
  if low in ("none", "null"):
    return None
  if low in ("true", "false"):
    return low == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _finite(name: str, value: float, text: str) -> float:
  if not math.isfinite(value):
    raise ValueError(f"`{name}` must be a finite number, got {text!r}")
  return value


def coerce(config_type: type, name: str, text: str) -> Any:
  """Parses ``text`` into the annotated type of ``config_type``'s field ``name``.

  Raises:
    ValueError: naming the field and the expected type.
  """
  hint = typing.get_type_hints(config_type)[name]
  args = typing.get_args(hint)
  optional = type(None) in args
  base = next((a for a in args if a is not type(None)), hint) if args else hint
  base = typing.get_origin(base) or base
  value = parse_literal(text)
  if value is None:
    if optional:
      return None
    raise ValueError(f"`{name}` cannot be None")
  if base is str:
    return str(text)
  if base is bool:
    if not isinstance(value, bool):
      raise ValueError(f"`{name}` expects true/false, got {text!r}")
    return value
  if base is int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"`{name}` expects an int, got {text!r}")
    if isinstance(value, float):
      if not value.is_integer():
        raise ValueError(f"`{name}` expects an int, got {text!r}")
      value = int(value)
    return value
  if base is float:
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf",
                                                                           "infinity"):
      value = float(value)  # parsed so that the message says what is wrong with it
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"`{name}` expects a number, got {text!r}")
    return _finite(name, float(value), text)
  if base is dict:
    if not isinstance(value, dict):
      raise ValueError(f"`{name}` expects a dict literal, got {text!r}")
    return value
  if base in (tuple, list):
    if not isinstance(value, (tuple, list)):
      raise ValueError(f"`{name}` expects a tuple literal, got {text!r}")
    return base(value)
  return value


def apply(cfg: Any, overrides: Any) -> Any:
  """A copy of the dataclass ``cfg`` with overrides applied.

  Args:
    cfg: a configuration dataclass instance.
    overrides: ``["field=value", "dict_field.key=value", ...]`` (parsed and coerced), or a
      dict ``{field: value}`` / ``{"dict_field.key": value}`` of already-typed values.

  Raises:
    ValueError: a malformed item, an unknown field, or a value of the wrong type.
  """
  fields = {f.name for f in dataclasses.fields(cfg)}
  cfg = dataclasses.replace(cfg, **{k: dict(v) for k, v in dataclasses.asdict(cfg).items()
                                    if isinstance(v, dict)})
  if overrides is None:
    return cfg
  if isinstance(overrides, dict):
    items = [(str(k), v, False) for k, v in overrides.items()]
  else:
    items = []
    for item in overrides:
      if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"`--set` expects key=value, got {item!r}")
      key, text = item.split("=", 1)
      items.append((key.strip().replace("-", "_"), text, True))
  for key, value, is_text in items:
    field, _, sub = key.partition(".")
    if field not in fields:
      raise ValueError(f"unknown config field {field!r} in `--set {key}`; known: "
                       f"{sorted(fields)}")
    if sub:
      target = getattr(cfg, field)
      if not isinstance(target, dict):
        raise ValueError(f"`{field}` is not a dict; cannot set {key!r}")
      target[sub] = parse_literal(value) if is_text else value
    else:
      setattr(cfg, field, coerce(type(cfg), field, value) if is_text else value)
  return cfg
