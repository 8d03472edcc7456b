"""Routing rules of a subscription: which app path a delivered event goes to.

A subscription's ``routes.rules[]`` (dapr-api.md 5.7/5.8) each carry a
``match`` expression in the Common Expression Language (CEL) over ``event``,
the CloudEvent as a JSON map. The delivery loop tries the rules in order and
posts the event to the ``path`` of the first that matches. Each rule is
compiled once, when the subscription loads (``compile_rule``; syntax errors
are ``RuleError``), then ``Rule.matches`` runs for every event.

We implement the subset of CEL routing rules use: literals and lists, field
and index access, ``has()``, arithmetic, comparisons, ``in``, ``&& || !``,
``?:``, ``size``/``startsWith``/``endsWith``/``contains``/``matches`` and the
``int``/``double``/``string`` conversions. CEL's error rules decide what an
event that lacks a field does: reading a missing field is an error, an error
makes the rule *not match* (never an exception for the caller), and ``&&``/
``||`` absorb an error when the other side alone decides the result.

Two deliberate departures from strict CEL, both because Dapr decodes JSON
numbers as doubles while Python keeps ``5`` an int: an int meets a double in
arithmetic by widening to double, and ints and doubles compare numerically
(as ``==`` and ``<`` already do in current CEL). ``matches`` uses Python's
``re`` rather than RE2; patterns written for RE2 behave the same.
"""

from __future__ import annotations

import logging
import math
import operator
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeGuard

from daprlite.blocks.pubsub._rules_parse import (
    INT64_MAX,
    INT64_MIN,
    Binary,
    Call,
    Conditional,
    EventRef,
    Has,
    Index,
    ListExpr,
    Literal,
    Node,
    RuleError,
    Select,
    Unary,
    parse_rule,
)

__all__ = ["Rule", "RuleError", "compile_rule"]

_log = logging.getLogger("daprlite.pubsub")

_INT_TEXT = re.compile(r"[+-]?\d+")
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity|nan)", re.I
)

# Operand kinds are checked before use, so the callables may take anything.
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class _EvalError(Exception):
    """Evaluating a rule failed for this event; the rule then does not match."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled ``match`` expression; the empty text matches every event."""

    text: str
    _root: Node | None = field(repr=False, compare=False)

    def matches(self, event: Mapping[str, object]) -> bool:
        """Whether the rule holds for ``event``; evaluation errors count as no match."""
        if self._root is None:
            return True
        try:
            result = _eval(self._root, event)
        except _EvalError as exc:
            _log.debug("routing rule %r does not match: %s", self.text, exc)
            return False
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            # Pathological event data (say, lists nested a thousand deep) must cost one
            # rule, not the delivery of the event.
            _log.debug("routing rule %r failed: %s", self.text, type(exc).__name__)
            return False
        if not isinstance(result, bool):
            _log.debug("routing rule %r gave a %s, not a bool", self.text, _kind(result))
            return False
        return result


def compile_rule(text: str) -> Rule:
    """Parse a rule once, at start-up. Raises ``RuleError`` naming the column."""
    return Rule(text, parse_rule(text) if text.strip() else None)


# --- evaluation --------------------------------------------------------------


def _eval(node: Node, event: Mapping[str, object]) -> object:
    match node:
        case Literal(value):
            return value
        case EventRef():
            return event
        case Select(operand, name):
            return _select(_eval(operand, event), name)
        case Index(operand, key):
            return _index(_eval(operand, event), _eval(key, event))
        case Has(operand, name):
            target = _eval(operand, event)
            if not isinstance(target, Mapping):
                raise _EvalError(f"has() cannot look into a {_kind(target)}")
            return name in target
        case ListExpr(items):
            return [_eval(item, event) for item in items]
        case Unary(op, operand):
            return _unary(op, _eval(operand, event))
        case Binary("&&" | "||" as op, left, right):
            return _logic(op, left, right, event)
        case Binary(op, left, right):
            return _binary(op, _eval(left, event), _eval(right, event))
        case Conditional(cond, then, otherwise):
            chosen = _bool(_eval(cond, event), "?:")
            return _eval(then if chosen else otherwise, event)
        case Call(name, args):
            return _call(name, [_eval(arg, event) for arg in args])
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover - parser bug


def _logic(op: str, left: Node, right: Node, event: Mapping[str, object]) -> bool:
    # CEL's commutative short-circuit: the deciding value (false for &&, true for
    # ||) wins from either side, even when the other side is an error.
    decisive = op == "||"
    outcomes: list[bool | _EvalError] = []
    for side in (left, right):
        try:
            value = _bool(_eval(side, event), op)
        except _EvalError as exc:
            outcomes.append(exc)
            continue
        if value is decisive:
            return decisive
        outcomes.append(value)
    for outcome in outcomes:
        if isinstance(outcome, _EvalError):
            raise outcome
    return not decisive


def _select(target: object, name: str) -> object:
    if not isinstance(target, Mapping):
        raise _EvalError(f"cannot read field {name!r} of a {_kind(target)}")
    if name not in target:
        raise _EvalError(f"no such key {name!r}")
    return target[name]


def _index(target: object, key: object) -> object:
    if isinstance(target, list | tuple):
        if not _is_int(key):
            raise _EvalError(f"a list index must be an int, not a {_kind(key)}")
        if not 0 <= key < len(target):
            raise _EvalError(f"index {key} out of range for a list of {len(target)}")
        return target[key]
    if isinstance(target, Mapping):
        if isinstance(key, str):
            if key in target:
                return target[key]
        else:
            for k, value in target.items():
                if _equal(k, key):
                    return value
        raise _EvalError("no such key" + (f" {key!r}" if isinstance(key, str) else ""))
    raise _EvalError(f"cannot index a {_kind(target)}")


def _unary(op: str, value: object) -> object:
    if op == "!":
        return not _bool(value, "!")
    if _is_int(value):
        return _int_result(-value)
    if isinstance(value, float):
        return -value
    raise _EvalError(f"cannot negate a {_kind(value)}")


def _binary(op: str, a: object, b: object) -> object:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        if isinstance(b, list | tuple | Mapping):
            return any(_equal(a, item) for item in b)
        raise _EvalError(f"'in' needs a list or a map on the right, not a {_kind(b)}")
    if op in ("<", "<=", ">", ">="):
        return _order(op, a, b)
    return _arith(op, a, b)


def _equal(a: object, b: object) -> bool:
    """CEL equality: numbers across int/double by value, otherwise same kind and value."""
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool | str) or a is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
        )
    return False


def _order(op: str, a: object, b: object) -> bool:
    comparable = (
        (_is_number(a) and _is_number(b))
        or (isinstance(a, str) and isinstance(b, str))
        or (isinstance(a, bool) and isinstance(b, bool))
    )
    if not comparable:
        raise _EvalError(f"cannot compare a {_kind(a)} with a {_kind(b)} using {op!r}")
    return bool(_ORDER[op](a, b))


def _arith(op: str, a: object, b: object) -> object:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if op == "+" and isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return [*a, *b]
    if not (_is_number(a) and _is_number(b)):
        raise _EvalError(f"no operator {op!r} for a {_kind(a)} and a {_kind(b)}")
    assert isinstance(a, int | float) and isinstance(b, int | float)
    if isinstance(a, int) and isinstance(b, int):
        return _int_arith(op, a, b)
    if op == "%":
        raise _EvalError("'%' needs two ints")
    x, y = float(a), float(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:  # IEEE 754, as CEL's doubles: ±inf, or NaN for 0/0
        return (
            math.nan
            if x == 0 or math.isnan(x)
            else math.copysign(math.inf, x) * math.copysign(1.0, y)
        )
    return x / y


def _int_arith(op: str, a: int, b: int) -> int:
    if op == "+":
        return _int_result(a + b)
    if op == "-":
        return _int_result(a - b)
    if op == "*":
        return _int_result(a * b)
    if b == 0:
        raise _EvalError("division by zero" if op == "/" else "modulus by zero")
    # Truncating division and a remainder with the dividend's sign, as in CEL and Go.
    quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
    return _int_result(quotient) if op == "/" else a - quotient * b


def _call(name: str, args: list[object]) -> object:
    subject = args[0]
    if name == "size":
        if isinstance(subject, str | list | tuple | Mapping):
            return len(subject)
        raise _EvalError(f"size() of a {_kind(subject)}")
    if name == "int":
        return _to_int(subject)
    if name == "double":
        return _to_double(subject)
    if name == "string":
        return _to_string(subject)
    other = args[1]
    if not (isinstance(subject, str) and isinstance(other, str)):
        raise _EvalError(f"{name}() needs strings, not a {_kind(subject)} and a {_kind(other)}")
    if name == "startsWith":
        return subject.startswith(other)
    if name == "endsWith":
        return subject.endswith(other)
    if name == "contains":
        return other in subject
    # matches: CEL tests whether the pattern occurs anywhere, so search, not match.
    return _pattern(other).search(subject) is not None


@lru_cache(maxsize=128)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _pattern(pattern: str) -> re.Pattern[str]:
    compiled = _compiled(pattern)
    if compiled is None:
        raise _EvalError("matches() got an invalid regular expression")
    return compiled


def _to_int(value: object) -> int:
    if _is_int(value):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return _int_result(int(value))  # truncates towards zero
        raise _EvalError("int() of a non-finite double")
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return _int_result(int(value))
    raise _EvalError(f"int() cannot convert this {_kind(value)}")


def _to_double(value: object) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str) and _DOUBLE_TEXT.fullmatch(value):
        return float(value)
    raise _EvalError(f"double() cannot convert this {_kind(value)}")


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _double_text(value)
    raise _EvalError(f"string() cannot convert a {_kind(value)}")


def _double_text(x: float) -> str:
    """Shortest round-trip text in Go's ``%g`` layout, which is what Dapr's CEL prints."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    shortest = Decimal(repr(x)).normalize().as_tuple()
    digits = len(shortest.digits)
    point = digits + int(shortest.exponent) - 1  # the decimal exponent of the leading digit
    if point < -4 or point >= 6:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{max(digits - point - 1, 0)}f}"


def _bool(value: object, op: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _EvalError(f"{op!r} needs a bool, not a {_kind(value)}")


def _int_result(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _EvalError("integer overflow")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """CEL's name for a value's type, for messages (never the value: events are data)."""
    if value is None:
        return "null"
    return next((name for t, name in _KINDS if isinstance(value, t)), type(value).__name__)


_KINDS: tuple[tuple[type | types.UnionType, str], ...] = (
    (bool, "bool"),  # before int: a Python bool is an int
    (int, "int"),
    (float, "double"),
    (str, "string"),
    (list | tuple, "list"),
    (Mapping, "map"),
)
