"""JSON read with its nesting bounded (namesmith.core.bounded_json): the depth read from the text is the parsed
value's, and what is too deep or no JSON is one ValueError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namesmith.core.bounded_json import json_depth, loads_bounded


def _walked_depth(value) -> int:
    """How deep a parsed value's lists and dicts nest, walked (the rule `json_depth` reads from the text)."""
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_walked_depth, children), default=0)


json_text = st.text(st.sampled_from('ab[]{}"\\,: \n\u00e9\u2028'), max_size=6)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
                           max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(json_values, st.booleans(), st.booleans())
def test_the_depth_read_from_the_text_is_the_parsed_value_s(value, ascii_only, indent):
    """Brackets and quotes inside strings, escaped or not, and any layout: the depth `json_depth` reads from the
    text before parsing is the depth of what `json.loads` builds."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=2 if indent else None).encode()
    assert json_depth(text, 64) == _walked_depth(json.loads(text))


@pytest.mark.parametrize("text, why", [(b"[" * 100_000 + b"]" * 100_000, "nested more than 64 levels deep"),
                                       (b'{"a": ' + b"[" * 65 + b"]" * 65 + b"}", "nested more than 64 levels deep"),
                                       (b'"' + b"[" * 100, "nested more than 64 levels deep"),  # no string
                                       (b'{"a": 1', "not valid JSON"), (b"\xff", "not valid JSON")])
def test_too_deep_or_no_json_is_one_value_error(text, why):
    with pytest.raises(ValueError, match=why):
        loads_bounded(text, 64)


def test_as_deep_as_the_bound_is_read():
    text = b'{"a": ' + b"[" * 63 + b'"]]"' + b"]" * 63 + b"}"  # 64 levels, and brackets in a string
    value = loads_bounded(text, 64)
    for _ in range(63):
        [value] = value["a"] if isinstance(value, dict) else value
    assert value == "]]"
