"""JSON from files a user may have edited or been sent (a model's namesmith.json, a weights file's header): its
nesting is checked from the text before `json.loads` builds it, as the parser recurses (a file nested 100,000 levels
deep was a RecursionError traceback)."""

from __future__ import annotations

import json
import re
from typing import Any

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes, limit: int) -> int:
    """How deep the arrays and objects of JSON text nest (counted up to `limit` + 1), from its brackets outside
    strings. The strings and the rest go at C speed; walking the parsed value instead visited each word of a word
    list."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def loads_bounded(data: bytes, max_depth: int) -> Any:
    """The value of UTF-8 JSON `data` nested at most `max_depth` deep; a ValueError saying what is wrong otherwise."""
    if json_depth(data, max_depth) > max_depth:
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not valid JSON ({e})") from None
    except RecursionError:  # brackets the string pattern mistook, in text that is no JSON
        raise ValueError("not valid JSON (nested too deep)") from None
