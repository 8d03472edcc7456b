"""Tokenizer, syntax tree and parser for pub/sub routing rules (see ``rules.py``).

A subscription's ``routes.rules[].match`` text is parsed here once, when the
subscription is loaded, into a tree of frozen nodes; ``rules.py`` evaluates
that tree against every delivered CloudEvent. Everything that can be known
without an event — syntax, unknown names and functions, wrong argument counts,
bad regular-expression literals — is a ``RuleError`` naming the column, so a
typo stops start-up instead of silently routing nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The one variable a rule may name (dapr-api.md 5.7): the CloudEvent as a map.
EVENT = "event"

# Function name -> argument count; methods count the receiver separately.
_GLOBALS = {"has": 1, "size": 1, "int": 1, "double": 1, "string": 1, "matches": 2}
_METHODS = {"size": 0, "startsWith": 1, "endsWith": 1, "contains": 1, "matches": 1}
_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in")
# Bounds the recursion of both the parser and the evaluator: an operator adds one
# level, a bracket or ``?:`` adds _BRACKET (each costs the parser a dozen frames).
_MAX_DEPTH = 100
_BRACKET = 3

_TOKEN = re.compile(
    r"""(?P<string>[rR]?(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))"""
    r"|(?P<double>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
    r"|(?P<int>0[xX][0-9a-fA-F]+|\d+)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%()\[\].,?:])"
)
_SIMPLE_ESCAPES = {
    "\\": "\\", '"': '"', "'": "'", "`": "`", "?": "?",
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
}  # fmt: skip
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|X[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}"
                     r"|[0-3][0-7]{2}|.)", re.S)  # fmt: skip


class RuleError(ValueError):
    """The rule text does not compile; the message names the column."""


# --- syntax tree -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class EventRef:
    """The ``event`` variable."""


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    operand: Node
    key: Node


@dataclass(frozen=True, slots=True)
class Has:
    """``has(operand.field)``: a presence test, which never reads the field."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "!" | "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # arithmetic, comparison, "in", "&&", "||"
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional:
    cond: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class Call:
    """A function; for the method form ``x.f(y)`` the receiver is ``args[0]``."""

    name: str
    args: tuple[Node, ...]


Node = Literal | ListExpr | EventRef | Select | Index | Has | Unary | Binary | Conditional | Call


# --- tokens ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "string" | "double" | "int" | "ident" | "keyword" | "op" | "end"
    text: str
    column: int  # 1-based


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
            what = "unterminated string" if text[pos] in "\"'" else f"unexpected {text[pos]!r}"
            raise RuleError(f"{what} at column {pos + 1}")
        kind, word = m.lastgroup, m.group()
        if kind == "ident" and word in _KEYWORDS:
            kind = "keyword"
        elif kind == "ident" and word == "in":
            kind = "op"
        tokens.append(_Token(kind, word, pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _string_value(tok: _Token) -> str:
    raw = tok.text[0] in "rR"
    body = tok.text[2:-1] if raw else tok.text[1:-1]
    if raw:
        return body

    def unescape(m: re.Match[str]) -> str:
        esc = m.group()[1:]
        if esc in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[esc]
        if esc[0] in "xXuU":
            code = int(esc[1:], 16)
        elif esc[0].isdigit() and len(esc) == 3:
            code = int(esc, 8)
        else:
            raise RuleError(f"unknown escape '\\{esc}' in the string at column {tok.column}")
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise RuleError(f"invalid code point in the string at column {tok.column}")
        return chr(code)

    return _ESCAPE.sub(unescape, body)


def _int_value(tok: _Token, negative: bool = False) -> int:
    value = int(tok.text, 16 if tok.text[:2] in ("0x", "0X") else 10)
    value = -value if negative else value
    if not INT64_MIN <= value <= INT64_MAX:
        raise RuleError(f"integer {tok.text} at column {tok.column} does not fit in 64 bits")
    return value


# --- parser ------------------------------------------------------------------


class _Parser:
    """Recursive descent, one method per CEL precedence level (lowest first)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self, *ops: str) -> _Token | None:
        if self.tok.kind == "op" and self.tok.text in ops:
            self.i += 1
            return self.tokens[self.i - 1]
        return None

    def expect(self, op: str) -> _Token:
        tok = self.take(op)
        if tok is None:
            raise RuleError(f"expected {op!r} but found {_describe(self.tok)}")
        return tok

    def enter(self, tok: _Token, weight: int = 1) -> None:
        self.depth += weight
        if self.depth > _MAX_DEPTH:
            raise RuleError(f"the rule is nested too deeply at column {tok.column}")

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            raise RuleError(f"unexpected {_describe(self.tok)}")
        return node

    def expr(self) -> Node:
        cond = self.or_()
        if (q := self.take("?")) is None:
            return cond
        self.enter(q, _BRACKET)
        then = self.or_()
        self.expect(":")
        node = Conditional(cond, then, self.expr())
        self.depth -= _BRACKET
        return node

    def _left_assoc(self, ops: tuple[str, ...], operand: _Level) -> Node:
        start, node = self.depth, operand()
        while op := self.take(*ops):
            self.enter(op)
            node = Binary(op.text, node, operand())
        self.depth = start
        return node

    def or_(self) -> Node:
        return self._left_assoc(("||",), self.and_)

    def and_(self) -> Node:
        return self._left_assoc(("&&",), self.relation)

    def relation(self) -> Node:
        return self._left_assoc(_COMPARE, self.addition)

    def addition(self) -> Node:
        return self._left_assoc(("+", "-"), self.multiplication)

    def multiplication(self) -> Node:
        return self._left_assoc(("*", "/", "%"), self.unary)

    def unary(self) -> Node:
        op = self.take("!", "-")
        if op is None:
            return self.member()
        if op.text == "-" and self.tok.kind == "int":
            # Folded so that the most negative int64 literal is expressible.
            lit = self.tok
            self.i += 1
            return self.postfix(Literal(_int_value(lit, negative=True)))
        self.enter(op)
        node = Unary(op.text, self.unary())
        self.depth -= 1
        return node

    def member(self) -> Node:
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        start = self.depth
        while op := self.take(".", "["):
            if op.text == "[":
                self.enter(op, _BRACKET)
                node = Index(node, self.expr())
                self.expect("]")
                self.depth -= _BRACKET - 1  # the index stays one level deeper
                continue
            self.enter(op)
            name = self.tok
            if name.kind != "ident":
                raise RuleError(f"expected a field name after '.' but found {_describe(name)}")
            self.i += 1
            if self.take("("):
                node = self.call(name, (node, *self.arguments()), method=True)
            else:
                node = Select(node, name.text)
        self.depth = start
        return node

    def primary(self) -> Node:
        tok = self.tok
        self.i += 1
        if tok.kind == "int":
            return Literal(_int_value(tok))
        if tok.kind == "double":
            return Literal(float(tok.text))
        if tok.kind == "string":
            return Literal(_string_value(tok))
        if tok.kind == "keyword":
            return Literal(_KEYWORDS[tok.text])
        if tok.kind == "ident":
            if self.take("("):
                return self.call(tok, self.arguments(), method=False)
            if tok.text != EVENT:
                raise RuleError(
                    f"unknown name {tok.text!r} at column {tok.column}; "
                    f"the only variable is {EVENT!r}"
                )
            return EventRef()
        if tok.kind == "op" and tok.text == "[":
            return ListExpr(self.arguments(closing="]"))
        if tok.kind == "op" and tok.text == "(":
            self.enter(tok, _BRACKET)
            node = self.expr()
            self.expect(")")
            self.depth -= _BRACKET
            return node
        self.i -= 1
        raise RuleError(f"expected a value but found {_describe(tok)}")

    def arguments(self, closing: str = ")") -> tuple[Node, ...]:
        """Comma-separated expressions up to ``closing`` (already past the opener)."""
        self.enter(self.tokens[self.i - 1], _BRACKET)
        args: list[Node] = []
        while not self.take(closing):
            args.append(self.expr())
            if not self.take(","):
                self.expect(closing)
                break
        self.depth -= _BRACKET
        return tuple(args)

    def call(self, name: _Token, args: tuple[Node, ...], *, method: bool) -> Node:
        table = _METHODS if method else _GLOBALS
        form = f"method .{name.text}()" if method else f"function {name.text}()"
        if name.text not in table:
            raise RuleError(f"unknown {form} at column {name.column}")
        wanted = table[name.text] + (1 if method else 0)
        if len(args) != wanted:
            given = len(args) - (1 if method else 0)
            raise RuleError(
                f"{form} at column {name.column} takes {wanted - (1 if method else 0)} "
                f"argument(s), not {given}"
            )
        if name.text == "has":
            target = args[0]
            if not isinstance(target, Select):
                raise RuleError(
                    f"has() at column {name.column} needs a field selection such as "
                    "has(event.data.field)"
                )
            return Has(target.operand, target.field)
        if name.text == "matches" and isinstance(pattern := args[1], Literal):
            _check_pattern(pattern.value, name)
        return Call(name.text, args)


_Level = Callable[[], Node]


def _describe(tok: _Token) -> str:
    return "the end of the rule" if tok.kind == "end" else f"{tok.text!r} at column {tok.column}"


def _check_pattern(pattern: object, name: _Token) -> None:
    if not isinstance(pattern, str):
        raise RuleError(f"matches() at column {name.column} needs a string pattern")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise RuleError(f"bad regular expression at column {name.column}: {exc}") from None


def _static_kind(node: Node) -> str | None:
    """What a node surely yields when that is not a bool; None when it may be a bool."""
    if isinstance(node, Literal) and not isinstance(node.value, bool):
        return "null" if node.value is None else type(node.value).__name__
    if isinstance(node, ListExpr):
        return "list"
    if isinstance(node, Binary) and node.op in ("+", "-", "*", "/", "%"):
        return "value computed by " + repr(node.op)
    if isinstance(node, Unary) and node.op == "-":
        return "number"
    if isinstance(node, Call) and node.name in ("size", "int", "double", "string"):
        return f"{node.name}() result"
    return None


def parse_rule(text: str) -> Node:
    """The syntax tree of a (non-empty) rule; raises ``RuleError`` naming the column."""
    root = _Parser(text).parse()
    if kind := _static_kind(root):
        raise RuleError(f"a rule must be a condition (true or false), not a {kind}")
    return root
