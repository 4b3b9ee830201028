"""Metadata conditions (`K=V`, `K!=V`, `K>V`, `K>=V`, `K<V`, `K<=V`, `K~TEXT`, `K?`) as
SQL/JSON path predicates over the `metadata` column.

Each condition becomes one `metadata @? <jsonpath>` test, the jsonpath passed as a query
parameter (never spliced into SQL), which the GIN index on `metadata` serves. Keys may name
nested values with dots (`sample.temperature`). A value that reads as a JSON number compares
as a number, `true`/`false`/`null` as JSON literals, a JSON array (`K=["a","b"]`) means
"any of", anything else is a string (ISO dates compare correctly as strings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_CONDITIONS = 20
MAX_KEY = 200
MAX_VALUE = 1000
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_CONDITION = re.compile(rf"^(?P<key>{_KEY})(?P<op>!=|>=|<=|=|>|<|~)(?P<value>.*)$", re.S)
_EXISTS = re.compile(rf"^(?P<key>{_KEY})\?$")
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_OPERATORS = {"=": "==", "!=": "==", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


class InvalidCondition(ValueError):
    """A condition that cannot be read; the message shows the accepted forms."""


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any = None

    @property
    def negated(self) -> bool:
        return self.op == "!="

    def jsonpath(self) -> str:
        path = "$" + "".join(f".{json.dumps(part)}" for part in self.key.split("."))
        if self.op == "?":
            return path
        if self.op == "~":
            return f'{path} ? (@ like_regex {json.dumps(str(self.value))} flag "iq")'
        values = self.value if isinstance(self.value, list) else [self.value]
        test = " || ".join(f"@ {_OPERATORS[self.op]} {_literal(v)}" for v in values)
        return f"{path} ? ({test})"


def _literal(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value)


def _value(text: str, op: str) -> Any:
    if op == "~":
        return text
    if _NUMBER.match(text):
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return text
    if text in ("true", "false", "null"):
        return json.loads(text)
    if op in ("=", "!=") and text.startswith("["):
        try:
            items = json.loads(text, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            return text
        if (
            isinstance(items, list)
            and items
            and all(isinstance(i, str | Decimal | bool) or i is None for i in items)
        ):
            return items
    return text


def parse(text: str) -> Condition:
    """One condition; raises InvalidCondition with the accepted forms."""
    if len(text) > MAX_KEY + MAX_VALUE + 2:
        raise InvalidCondition(f"condition too long (at most {MAX_KEY + MAX_VALUE} characters)")
    if exists := _EXISTS.match(text):
        return Condition(exists["key"], "?")
    match = _CONDITION.match(text)
    if not match or len(match["key"]) > MAX_KEY or "\x00" in text:
        raise InvalidCondition(
            f"cannot read condition {text!r}: use K=V, K!=V, K>V, K>=V, K<V, K<=V, K~TEXT or K? "
            "(K: letters, digits, '_', '-', '.' for nested keys)"
        )
    if any(part == "" for part in match["key"].split(".")):
        raise InvalidCondition(f"key {match['key']!r} has an empty part between dots")
    return Condition(match["key"], match["op"], _value(match["value"], match["op"]))


def parse_all(texts: list[str]) -> list[Condition]:
    if len(texts) > MAX_CONDITIONS:
        raise InvalidCondition(f"at most {MAX_CONDITIONS} conditions")
    return [parse(text) for text in texts]
