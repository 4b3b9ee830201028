"""Hypothesis strategies for hostile bodies: any JSON value in any field of a valid one."""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from hypothesis import strategies as st

# Any JSON value, including what Python's encoder writes but strict JSON lacks (NaN,
# Infinity), integers beyond 64 bits, NUL characters and lone surrogates in strings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(),
    st.sampled_from([1e300, -1e300, 5e-324]),
    st.text(st.characters(codec=None), max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "9999-12-31T23:59:59-01:00", "1e400", "NaN"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of a document (objects and lists included), as key paths."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


def mutations(document: Any) -> st.SearchStrategy[Any]:
    """The document with one to three of its fields (or the whole body) replaced by any
    JSON value."""
    every = paths(document)
    one = st.tuples(st.sampled_from(every), json_values)

    def apply(changes: list[tuple[tuple[Any, ...], Any]]) -> Any:
        result = document
        for path, value in changes:
            # An earlier change may have removed the parent: then this one has no target.
            with suppress(KeyError, IndexError, TypeError):
                result = replaced(result, path, value)
        return result

    return st.one_of(json_values, st.lists(one, min_size=1, max_size=3).map(apply))


def encoded(document: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity stay literal, surrogates are escaped."""
    return json.dumps(document).encode()
