"""How deep a JSON body nests, counted without parsing it: the same as a parser's count for
any JSON value, strings with brackets and escaped quotes included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aetheris.api.bodies import nesting

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@given(JSON, st.booleans())
def test_nesting_counts_what_a_parser_would(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting(text) == depth(value)


def test_text_that_is_not_json_still_gets_a_count() -> None:
    assert nesting(b"") == 0
    assert nesting(b"]]]") == 0
    assert nesting(b'["unterminated [[[') == 4
    assert nesting(b"[" * 10_000) == 10_000
