"""The one rule for a JSON field whose type drifts between responses (NeoWs, Hacker News): `typed_value` converts
only the spellings listed below to the declared type and refuses anything else, before dlt sees the row. dlt would
otherwise read `"yes"`, `"t"` or `2` as true, or add a variant column (`<column>__v_text`) and leave the typed
column NULL."""

from __future__ import annotations

import json
import re
from typing import Any

BOOLEAN_SPELLINGS: dict[Any, bool] = {"true": True, "false": False, "1": True, "0": False, 1: True, 0: False}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", dict: "object", list: "array"}


def typed_value(data_type: str, value: Any) -> Any:
    """`value` as the declared `data_type`, converting only these spellings (ValueError for anything else):

    - bool: JSON true/false; the strings `"true"`/`"false"` and `"1"`/`"0"` (any case, spaces trimmed); the numbers
      1 and 0. Not `"yes"`, `"t"`, `2` or `""`.
    - double: any JSON number; a string holding a decimal number (`"26.8"`, `"1e3"`); not `"nan"` or `"abc"`.
    - bigint: a JSON integer, or a whole number sent as `27.0` or `"27"`.
    - text: a string; a JSON number becomes its decimal text (`3542519` -> `"3542519"`).
    - json: an array or an object.
    - date, timestamp: as they are (the source sets them).
    None (JSON null) stays None. A boolean is never a number or text, an object or list never a scalar."""
    if value is None or data_type in ("date", "timestamp"):
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = value.strip() if isinstance(value, str) else None
    if data_type == "bool":
        if isinstance(value, bool):
            return value
        key = text.lower() if text is not None else value if number else None
        if key in BOOLEAN_SPELLINGS:
            return BOOLEAN_SPELLINGS[key]
    elif data_type == "double":
        if number:
            return float(value)
        if text is not None and _NUMBER.fullmatch(text):
            return float(text)
    elif data_type == "bigint":
        if number and float(value).is_integer():
            return int(value)
        if text is not None and _INTEGER.fullmatch(text):
            return int(text)
    elif data_type == "text":
        if isinstance(value, str):
            return value
        if number:
            return str(value)
    elif data_type == "json" and isinstance(value, list | dict):
        return value
    raise ValueError(f"not a {data_type}")


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """A value for an error message: at most 80 characters, with its JSON type."""
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return f"{text[:80]}{'...' if len(text) > 80 else ''} (JSON {json_type(value)})"
