"""Canonical JSON (spec appendix "Canonical JSON") and its strict validation.

Room versions 1-5 must accept JSON that breaks the canonical number rules (floats,
integers beyond 2**53), so encoding stays lenient and strictness is a separate check
that v6+ events go through.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from canonicaljson import encode_canonical_json as _encode

from homeserver.events.errors import EventValidationError
from homeserver.room_versions import RoomVersion

MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -MAX_SAFE_INTEGER


def encode_canonical_json(obj: object) -> bytes:
    """The canonical JSON bytes of ``obj``; the bytes that are hashed and signed."""
    try:
        return _encode(obj)
    except UnicodeEncodeError:
        # Lone surrogates survive json.loads("\\ud800") but have no UTF-8 form.
        raise EventValidationError("JSON contains a string that is not valid Unicode") from None
    except ValueError as e:
        # NaN and infinities (allow_nan=False), circular references.
        raise EventValidationError(f"value cannot be encoded as canonical JSON: {e}") from None


def check_strict_canonical_json(value: object) -> None:
    """Raise ``EventValidationError`` unless ``value`` obeys the v6+ number rules.

    Only integers within +-(2**53 - 1) may appear; floats are refused even when they are
    integral, since their JSON text would need a decimal point or exponent.
    """
    # An explicit stack: events from the network can nest deeply, and recursion costs
    # more than a loop on this hot path.
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not MIN_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise EventValidationError(
                    f"integer at {path or '<root>'} is outside the canonical JSON range "
                    f"[-(2**53)+1, (2**53)-1]"
                )
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str:
                    raise EventValidationError(f"non-string object key at {path or '<root>'}")
                child_kind = type(child)
                if child_kind is str or child_kind is bool or child is None:
                    continue
                if child_kind is float:
                    raise _float_error(f"{path}.{key}" if path else key)
                stack.append((child, f"{path}.{key}" if path else key))
        elif kind is list or kind is tuple:
            for index, child in enumerate(item):
                stack.append((child, f"{path}[{index}]"))
        elif kind is float or isinstance(item, float):
            raise _float_error(path)
        # Subclasses of the JSON types (IntEnum, frozen mappings...) are rare: normalise
        # them to the base type and look again.
        elif isinstance(item, str):
            continue
        elif isinstance(item, int):
            stack.append((int(item), path))
        elif isinstance(item, Mapping):
            stack.append((dict(item), path))
        elif isinstance(item, (list, tuple)):
            stack.append((list(item), path))
        else:
            raise EventValidationError(
                f"value at {path or '<root>'} of type {kind.__name__} is not JSON"
            )


def _float_error(path: str) -> EventValidationError:
    return EventValidationError(
        f"number at {path or '<root>'} is not an integer; canonical JSON forbids floats"
    )


def validate_canonical_json(value: object, room_version: RoomVersion) -> None:
    """Apply the canonical JSON rules of ``room_version`` to ``value``."""
    if room_version.strict_canonical_json:
        check_strict_canonical_json(value)


def _reject_constant(name: str) -> None:
    raise EventValidationError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(data: bytes | str) -> Any:
    """Parse JSON text, refusing the NaN/Infinity extensions Python's parser allows."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EventValidationError("JSON text is not valid UTF-8") from None
    try:
        return _decoder.decode(data)
    except json.JSONDecodeError as e:
        raise EventValidationError(f"invalid JSON: {e}") from None
