"""The circuit breakers' ``trip`` expressions: a small, safe evaluator.

Dapr writes ``circuitBreakers.<name>.trip`` in CEL (``consecutiveFailures > 5``).
We accept the subset such expressions use — integer and float literals,
``true``/``false``, the five breaker counters, ``+ - * / %``, comparisons,
``&& || !`` and parentheses — with CEL's precedence. An expression is parsed
and type-checked once, when the Resiliency resource is loaded (so a typo stops
start-up with the field named), and evaluated after every failure in the
closed state. Nothing here calls ``eval``.

Arithmetic follows CEL where it matters: integer division truncates towards
zero (``totalFailures / requests`` is 0 until every request failed), and a
division by zero is an evaluation error, which (as in Dapr) means "do not
trip". Unlike CEL we let an integer meet a float — the integer is widened — so
``totalFailures * 1.0 / requests > 0.5`` needs no ``double()``, which we lack.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

COUNTERS = (
    "requests",
    "totalSuccesses",
    "totalFailures",
    "consecutiveSuccesses",
    "consecutiveFailures",
)

Number = int | float
Value = int | float | bool
Env = Mapping[str, int]

_TOKEN = re.compile(
    r"(?P<number>\d+\.\d+|\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||==|!=|>=|<=|[-+*/%<>!()])"
)


_MAX_DEPTH = 32


class ExpressionError(ValueError):
    """The expression does not parse or does not type-check; the message says where."""


class _EvalError(Exception):
    """Evaluation failed (division by zero); the breaker treats it as 'do not trip'."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    column: int  # 1-based, for error messages


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at column {pos + 1}")
        tokens.append(_Token(m.lastgroup, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Node:
    """A compiled sub-expression: its static type ("number" or "bool") and its value."""

    __slots__ = ("type",)

    def __init__(self, type_: str) -> None:
        self.type = type_

    def run(self, env: Env) -> Value:
        raise NotImplementedError


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        super().__init__("bool" if isinstance(value, bool) else "number")
        self.value = value

    def run(self, env: Env) -> Value:
        return self.value


class _Counter(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__("number")
        self.name = name

    def run(self, env: Env) -> Value:
        return env[self.name]


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: _Node) -> None:
        super().__init__("bool" if op == "!" else "number")
        self.op, self.operand = op, operand

    def run(self, env: Env) -> Value:
        value = self.operand.run(env)
        return (not value) if self.op == "!" else -value


class _Binary(_Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: _Node, right: _Node) -> None:
        super().__init__("number" if op in _ARITH else "bool")
        self.op, self.left, self.right = op, left, right

    def run(self, env: Env) -> Value:
        if self.op == "&&":
            return bool(self.left.run(env)) and bool(self.right.run(env))
        if self.op == "||":
            return bool(self.left.run(env)) or bool(self.right.run(env))
        a, b = self.left.run(env), self.right.run(env)
        if self.op in _ARITH:
            return _ARITH[self.op](a, b)
        return _COMPARE[self.op](a, b)


def _int_div(a: int, b: int) -> int:
    if b == 0:
        raise _EvalError("division by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _div(a: Number, b: Number) -> Number:
    if isinstance(a, int) and isinstance(b, int):
        return _int_div(a, b)
    if b == 0:
        raise _EvalError("division by zero")
    return a / b


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise _EvalError("modulus by zero")
    if isinstance(a, int) and isinstance(b, int):
        return a - _int_div(a, b) * b  # sign follows the dividend, as in CEL and Go
    return a - b * int(a / b)


_ARITH: dict[str, Callable[[Number, Number], Number]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
    "%": _mod,
}
_COMPARE: dict[str, Callable[[Value, Value], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class _Parser:
    """Recursive descent, one method per precedence level (lowest first)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # nesting of parentheses and prefix operators

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ExpressionError(f"nested too deeply at column {tok.column}")

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self, *ops: str) -> _Token | None:
        if self.tok.kind == "op" and self.tok.text in ops:
            self.i += 1
            return self.tokens[self.i - 1]
        return None

    def parse(self) -> _Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise ExpressionError(f"unexpected {self.tok.text!r} at column {self.tok.column}")
        return node

    def or_(self) -> _Node:
        node = self.and_()
        while op := self.take("||"):
            node = self._logic(op, node, self.and_())
        return node

    def and_(self) -> _Node:
        node = self.relation()
        while op := self.take("&&"):
            node = self._logic(op, node, self.relation())
        return node

    def relation(self) -> _Node:
        node = self.addition()
        while op := self.take(*_COMPARE):
            right = self.addition()
            ordering = op.text not in ("==", "!=")
            if (ordering and (node.type, right.type) != ("number", "number")) or (
                node.type != right.type
            ):
                raise ExpressionError(
                    f"{op.text!r} at column {op.column} cannot compare "
                    f"{node.type} with {right.type}"
                )
            node = _Binary(op.text, node, right)
        return node

    def addition(self) -> _Node:
        node = self.multiplication()
        while op := self.take("+", "-"):
            node = self._arith(op, node, self.multiplication())
        return node

    def multiplication(self) -> _Node:
        node = self.unary()
        while op := self.take("*", "/", "%"):
            node = self._arith(op, node, self.unary())
        return node

    def unary(self) -> _Node:
        op = self.take("!", "-")
        if op is None:
            return self.primary()
        self.nest(op)
        inner = self.unary()
        self.depth -= 1
        self._expect(inner, "bool" if op.text == "!" else "number", op)
        return _Unary(op.text, inner)

    def primary(self) -> _Node:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            num: Number = float(tok.text) if "." in tok.text else int(tok.text)
            return _Const(num)
        if tok.kind == "name":
            self.i += 1
            if tok.text in ("true", "false"):
                return _Const(tok.text == "true")
            if tok.text not in COUNTERS:
                raise ExpressionError(
                    f"unknown name {tok.text!r} at column {tok.column}; "
                    f"the counters are {', '.join(COUNTERS)}"
                )
            return _Counter(tok.text)
        if paren := self.take("("):
            self.nest(paren)
            node = self.or_()
            if not self.take(")"):
                raise ExpressionError(f"expected ')' at column {self.tok.column}")
            self.depth -= 1
            return node
        what = "end of expression" if tok.kind == "end" else repr(tok.text)
        raise ExpressionError(f"expected a number, a counter or '(' but found {what}")

    @staticmethod
    def _expect(node: _Node, want: str, op: _Token) -> None:
        if node.type != want:
            raise ExpressionError(
                f"{op.text!r} at column {op.column} needs a {want}, not a {node.type}"
            )

    def _logic(self, op: _Token, left: _Node, right: _Node) -> _Node:
        self._expect(left, "bool", op)
        self._expect(right, "bool", op)
        return _Binary(op.text, left, right)

    def _arith(self, op: _Token, left: _Node, right: _Node) -> _Node:
        self._expect(left, "number", op)
        self._expect(right, "number", op)
        return _Binary(op.text, left, right)


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed, type-checked boolean expression over the breaker counters."""

    text: str
    _root: _Node

    @classmethod
    def parse(cls, text: str) -> Expression:
        if not text.strip():
            raise ExpressionError("the expression is empty")
        root = _Parser(text).parse()
        if root.type != "bool":
            raise ExpressionError(
                "the expression must be a condition (true or false), not a number"
            )
        return cls(text, root)

    def evaluate(self, counters: Env) -> bool:
        """True when the condition holds; False also when evaluation fails (division by zero)."""
        try:
            return bool(self._root.run(counters))
        except _EvalError:
            return False
