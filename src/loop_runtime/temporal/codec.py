"""A small, strict JSON codec for the values a tick sends through Temporal (PortCall args, results, the plan).

Why not pickle (or Temporal's converter for arbitrary classes): a workflow history is data that outlives
the process that wrote it and can be read by every worker. Decoding it must never be able to run code or
build an object of a class nobody expected. So the codec knows exactly these shapes:

* JSON scalars, lists (``list`` stays ``list``), ``{"$tuple": [...]}`` and ``{"$frozenset": [...]}``;
* mappings: ``{"$map": [[k, v], ...]}`` (any encodable key; order kept);
* ``{"$dt": iso}``, ``{"$date": iso}``, ``{"$path": str}``, ``{"$bytes": base64}``;
* ``{"$enum": "module:Qualname", "value": v}`` — an ``Enum`` defined under ``loop_runtime.``;
* ``{"$dc": "module:Qualname", "fields": {...}}`` — a *frozen* dataclass defined under ``loop_runtime.``
  (built through its own ``__init__`` from its init fields, so its validation runs);
* ``{"$error": "module:Qualname", "message": str}`` — an exception defined under ``loop_runtime.`` (what a
  port raised; rebuilt as that class when it takes one message, else as ``PortCallError``).

* ``{"$opaque": ref}`` — a worker-side object the tick only hands back (an adapter's own snapshot class):
  the worker keeps it in the tick's session and sends a reference; ``decode`` on the worker (given the
  session's ``lookup``) returns the object, elsewhere an ``Opaque(ref)``.

Classes are resolved only from the *value* modules (``core``, ``ports``, ``formats``, ``errors``, and the
Temporal payload modules): an adapter or application class is never imported by a decode, which in a
workflow would mean I/O code in the sandbox. Anything else — a lambda, an object of another package, a mutable dataclass, a set — is refused
(``CodecError``) on both sides: a value that cannot be encoded fails the call that wanted to send it, and a
payload naming a class outside ``loop_runtime`` or not a frozen dataclass/enum/exception is never resolved.
The module is pure (no I/O), so workflow code may use it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any

from ..errors import LoopError

__all__ = ["CodecError", "Opaque", "PortCallError", "decode", "decode_error", "encode", "encode_error"]

PREFIX = "loop_runtime."
#: the modules whose classes are plain values (pure, importable in a workflow)
VALUE_MODULES = ("loop_runtime.core.", "loop_runtime.ports", "loop_runtime.formats.", "loop_runtime.errors",
                 "loop_runtime.temporal.codec", "loop_runtime.temporal.types", "loop_runtime.temporal.port_types")
_TAGS = frozenset({"$tuple", "$frozenset", "$bytes", "$opaque", "$map", "$dt", "$date", "$path", "$enum", "$dc", "$error"})


class CodecError(ValueError):
    """A value (or payload) the codec refuses: named, never guessed at."""


class PortCallError(LoopError):
    """A port raised an error whose class cannot be rebuilt here; the message is kept."""


@dataclass(frozen=True)
class Opaque:
    """A worker-side object (kept in the tick's session) as the workflow holds it: a reference only."""

    ref: str


def _value_module(module: str) -> bool:
    for m in VALUE_MODULES:
        if module.startswith(m) if m.endswith(".") else (module == m or module.startswith(m + ".")):
            return True
    return False


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _ours(cls: type) -> bool:
    return cls.__module__.startswith(PREFIX) and "<locals>" not in cls.__qualname__


def encode(value: Any, keep: Any = None) -> Any:
    """``value`` as a JSON-able tree (see the module doc); ``CodecError`` for anything else.

    ``keep`` (the worker's session): stores an object of a non-value class and returns its reference, which
    is sent instead of the object (``$opaque``)."""
    return _encode(value, _Encoder(keep))


class _Encoder:
    def __init__(self, keep: Any) -> None:
        self.keep = keep


def _encode(value: Any, enc: _Encoder) -> Any:
    if value is None or type(value) in (bool, str):  # exact types: a StrEnum is an enum, not a string
        return value
    if isinstance(value, int | float) and type(value) in (int, float):
        return value
    if isinstance(value, enum.Enum):
        cls = type(value)
        if not _ours(cls):
            raise CodecError(f"cannot encode enum {_name(cls)}: not a loop_runtime type")
        return {"$enum": _name(cls), "value": _encode(value.value, enc)}
    if isinstance(value, Opaque):
        return {"$opaque": value.ref}
    if enc.keep is not None and _ours(type(value)) and not _value_module(type(value).__module__) \
            and not isinstance(value, enum.Enum | BaseException):
        return {"$opaque": str(enc.keep(value))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value, enc)
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if type(value) is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, PurePath):
        return {"$path": str(value)}
    if type(value) is tuple:
        return {"$tuple": [_encode(v, enc) for v in value]}
    if type(value) is list:
        return [_encode(v, enc) for v in value]
    if type(value) is frozenset:
        return {"$frozenset": [_encode(v, enc) for v in sorted(value, key=repr)]}
    if isinstance(value, dict | MappingProxyType):
        return {"$map": [[_encode(k, enc), _encode(v, enc)] for k, v in value.items()]}
    raise CodecError(f"cannot encode a value of type {type(value).__module__}.{type(value).__qualname__}")


def _encode_dataclass(value: Any, enc: _Encoder) -> dict[str, Any]:
    cls = type(value)
    if not _ours(cls):
        raise CodecError(f"cannot encode dataclass {_name(cls)}: not a loop_runtime type")
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise CodecError(f"cannot encode dataclass {_name(cls)}: not frozen")
    if not _value_module(cls.__module__):
        raise CodecError(f"cannot encode dataclass {_name(cls)}: not a value module's type")
    fields = {f.name: _encode(getattr(value, f.name), enc) for f in dataclasses.fields(value) if f.init}
    return {"$dc": _name(cls), "fields": fields}


def decode(tree: Any, lookup: Any = None) -> Any:
    """The value ``tree`` encodes; ``CodecError`` for any shape or class the codec does not allow.

    ``lookup`` (the worker's session) turns an ``$opaque`` reference back into the object it kept."""
    if tree is None or isinstance(tree, bool | str):
        return tree
    if type(tree) in (int, float):
        return tree
    if type(tree) is list:
        return [decode(v, lookup) for v in tree]
    if type(tree) is not dict:
        raise CodecError(f"cannot decode a value of type {type(tree).__name__}")
    tags = _TAGS.intersection(tree)
    if len(tags) != 1:
        raise CodecError(f"cannot decode an object with keys {sorted(tree)[:5]}")
    tag = next(iter(tags))
    try:
        return _DECODERS[tag](tree, lookup)
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, binascii.Error, RecursionError) as e:
        raise CodecError(f"cannot decode {tag}: {e}") from None


def _expect(tree: dict[str, Any], *keys: str) -> None:
    if set(tree) != set(keys):
        raise CodecError(f"cannot decode an object with keys {sorted(tree)[:5]} (expected {sorted(keys)})")


def _items(tree: dict[str, Any], tag: str) -> list[Any]:
    _expect(tree, tag)
    items = tree[tag]
    if type(items) is not list:
        raise CodecError(f"{tag} must hold a list")
    return items


def _map(tree: dict[str, Any], lookup: Any) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for pair in _items(tree, "$map"):
        if type(pair) is not list or len(pair) != 2:
            raise CodecError("$map entries must be [key, value] pairs")
        out[decode(pair[0], lookup)] = decode(pair[1], lookup)
    return out


def _text(tree: dict[str, Any], tag: str) -> str:
    _expect(tree, tag)
    if type(tree[tag]) is not str:
        raise CodecError(f"{tag} must hold a string")
    return str(tree[tag])


def resolve(name: Any) -> type:
    """The class ``module:Qualname`` names — only under ``loop_runtime.``, never a function or a module."""
    if type(name) is not str or ":" not in name:
        raise CodecError(f"not a class name: {name!r}")
    module, _, qual = name.partition(":")
    if not _value_module(module) or "<" in qual or not qual or not all(p.isidentifier() for p in qual.split(".")):
        raise CodecError(f"refusing to resolve {name!r}: only loop_runtime value classes are decoded")
    if any(p.startswith("_") for p in module.split(".")) or not all(p.isidentifier() for p in module.split(".")):
        raise CodecError(f"refusing to resolve {name!r}: not a public loop_runtime module")
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise CodecError(f"cannot resolve {name!r}: no such module") from None
    obj: Any = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not _ours(obj):
        raise CodecError(f"cannot resolve {name!r}: not a loop_runtime class")
    return obj


def _enum(tree: dict[str, Any], lookup: Any) -> Any:
    _expect(tree, "$enum", "value")
    cls = resolve(tree["$enum"])
    if not issubclass(cls, enum.Enum):
        raise CodecError(f"{tree['$enum']} is not an enum")
    return cls(decode(tree["value"], lookup))


def _dataclass(tree: dict[str, Any], lookup: Any) -> Any:
    _expect(tree, "$dc", "fields")
    cls = resolve(tree["$dc"])
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise CodecError(f"{tree['$dc']} is not a frozen dataclass")
    fields = tree["fields"]
    if type(fields) is not dict:
        raise CodecError("$dc fields must be an object")
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(fields) - allowed
    if unknown:
        raise CodecError(f"{tree['$dc']} has no field(s) {sorted(unknown)[:5]}")
    return cls(**{k: decode(v, lookup) for k, v in fields.items()})


def text_digest(text: str | None) -> str | None:
    """What compare-and-write compares: a file's digest (the history then holds its text once per try)."""
    import hashlib

    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_error(exc: BaseException) -> dict[str, Any]:
    """A port's exception as data: its class (when it is ours) and its message."""
    cls = type(exc)
    known = next((c for c in cls.__mro__ if _ours(c) and _value_module(c.__module__)), None)
    name = _name(known) if known is not None and isinstance(exc, Exception) else _name(PortCallError)
    message = str(exc) if known is not None else f"{cls.__name__}: {exc}"
    return {"$error": name, "message": message}


def decode_error(tree: Any) -> Exception:
    """The exception ``encode_error`` described, rebuilt (``PortCallError`` when its class needs more)."""
    if type(tree) is not dict:
        raise CodecError("an error must be an object")
    _expect(tree, "$error", "message")
    message = str(tree["message"])
    cls = resolve(tree["$error"])
    if not issubclass(cls, Exception):
        raise CodecError(f"{tree['$error']} is not an exception")
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 — its constructor wants more than a message
        return PortCallError(message)


def _error(tree: dict[str, Any], lookup: Any) -> Any:
    return decode_error(tree)


def _opaque(tree: dict[str, Any], lookup: Any) -> Any:
    ref = _text(tree, "$opaque")
    if lookup is None:
        return Opaque(ref)
    found = lookup(ref)
    if found is None:
        raise CodecError(f"no object {ref!r} kept in this session")
    return found


_DECODERS: Mapping[str, Any] = {
    "$tuple": lambda t, lk: tuple(decode(v, lk) for v in _items(t, "$tuple")),
    "$frozenset": lambda t, lk: frozenset(decode(v, lk) for v in _items(t, "$frozenset")),
    "$map": _map,
    "$dt": lambda t, lk: datetime.fromisoformat(_text(t, "$dt")),
    "$date": lambda t, lk: date.fromisoformat(_text(t, "$date")),
    "$path": lambda t, lk: Path(_text(t, "$path")),
    "$bytes": lambda t, lk: base64.b64decode(_text(t, "$bytes"), validate=True),
    "$opaque": _opaque,
    "$enum": _enum,
    "$dc": _dataclass,
    "$error": _error,
}
