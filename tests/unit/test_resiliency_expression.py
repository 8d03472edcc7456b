"""The circuit breakers' ``trip`` expressions: parsing, precedence, typing and errors."""

from __future__ import annotations

import pytest

from daprlite.resiliency.expression import COUNTERS, Expression, ExpressionError

COUNTS = {
    "requests": 10,
    "totalSuccesses": 3,
    "totalFailures": 7,
    "consecutiveSuccesses": 0,
    "consecutiveFailures": 4,
}


def holds(text: str, **counts: int) -> bool:
    return Expression.parse(text).evaluate({**COUNTS, **counts})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("consecutiveFailures > 3", True),
        ("consecutiveFailures > 4", False),
        ("consecutiveFailures >= 4", True),
        ("totalFailures < totalSuccesses", False),
        ("requests <= 10 && requests != 9", True),
        ("consecutiveSuccesses == 0", True),
        # * binds tighter than +, + tighter than comparison, && tighter than ||.
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("10 - 4 - 3 == 3", True),  # left-associative
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("!(requests < 5) && totalFailures > 5", True),
        ("!true || true", True),
        ("-consecutiveFailures < 0", True),
        # Integer division truncates towards zero, as in CEL and Go.
        ("totalFailures / requests == 0", True),
        ("-7 / 2 == -3", True),
        ("-7 % 3 == -1", True),
        # An integer meeting a float is widened.
        ("totalFailures * 1.0 / requests > 0.5", True),
        ("totalFailures * 1.0 / requests > 0.75", False),
    ],
)
def test_expression_evaluates_with_cel_precedence_and_arithmetic(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_every_counter_name_is_readable() -> None:
    for name in COUNTERS:
        assert holds(f"{name} == 42", **{name: 42})
        assert not holds(f"{name} == 42", **{name: 41})


def test_division_by_zero_means_do_not_trip() -> None:
    expr = Expression.parse("totalFailures / requests >= 0 || totalFailures % requests > 0")
    assert expr.evaluate({**COUNTS, "requests": 0}) is False
    assert expr.evaluate(COUNTS) is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("consecutiveFailures >", "end of expression"),
        ("failures > 3", "unknown name 'failures' at column 1"),
        ("requests", "must be a condition"),
        ("requests + 1", "must be a condition"),
        ("1 + true > 0", "'+' at column 3 needs a number"),
        ("!requests", "'!' at column 1 needs a bool"),
        ("requests > 1 & requests < 5", "unexpected character '&' at column 14"),
        ("(requests > 1", "expected ')'"),
        ("requests > 1)", "unexpected ')' at column 13"),
        ("1 == true", "cannot compare number with bool"),
        ("true < false", "cannot compare bool with bool"),
        ("1 < 2 < 3", "cannot compare bool with number"),
        ("requests > 1 requests", "unexpected 'requests'"),
        ("size(requests) > 1", "unknown name 'size'"),
        ("(" * 100 + "true" + ")" * 100, "nested too deeply"),
    ],
)
def test_invalid_expression_is_rejected_with_the_position(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        Expression.parse(text)
    assert message in str(info.value)
