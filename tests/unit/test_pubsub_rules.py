"""Routing rules of subscriptions (CEL ``match``): syntax, semantics, errors and Dapr's examples."""

from __future__ import annotations

import logging

import pytest

from daprlite.blocks.pubsub.rules import Rule, RuleError, compile_rule

EVENT: dict[str, object] = {
    "id": "e1",
    "specversion": "1.0",
    "type": "deposit",
    "source": "bank/branch-7",
    "topic": "orders",
    "pubsubname": "pubsub",
    "traceparent": "00-abc-def-01",
    "data": {
        "amount": 12500,
        "rate": 0.25,
        "important": True,
        "note": None,
        "tags": ["vip", "eu"],
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "meta": {"my-key": "v", "count": 3},
        "text": "Hello, World",
    },
}


def holds(text: str, event: dict[str, object] | None = None) -> bool:
    return compile_rule(text).matches(EVENT if event is None else event)


# --- Dapr's documented examples -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "event", "expected"),
    [
        ('event.type == "widget"', {"type": "widget"}, True),
        ('event.type == "widget"', {"type": "gadget"}, False),
        ("has(event.data.important) && event.data.important == true", EVENT, True),
        (
            "has(event.data.important) && event.data.important == true",
            {"data": {"other": 1}},
            False,
        ),
        ('event.type == "deposit" && event.data.amount > 10000', EVENT, True),
        (
            'event.type == "deposit" && event.data.amount > 10000',
            {"type": "deposit", "data": {"amount": 9999.5}},
            False,
        ),
        ('event.type == "mymessage.v1"', {"type": "mymessage.v1"}, True),
        ('event.type == "mymessage.v2"', {"type": "mymessage.v1"}, False),
        ("event.data.priorityTier == 'express'", {"data": {"priorityTier": "express"}}, True),
        ("event.data.destinationCountry != 'US'", {"data": {"destinationCountry": "FR"}}, True),
        ("event.data.destinationCountry != 'US'", {"data": {"destinationCountry": "US"}}, False),
    ],
)
def test_dapr_documented_examples_route_as_documented(
    text: str, event: dict[str, object], expected: bool
) -> None:
    assert holds(text, event) is expected


def test_first_matching_rule_in_order_wins_and_empty_rule_matches_everything() -> None:
    rules = [
        (compile_rule('event.type == "widget"'), "/widgets"),
        (compile_rule('event.type == "gadget"'), "/gadgets"),
        (compile_rule(""), "/products"),
    ]

    def route(event: dict[str, object]) -> str:
        return next(path for rule, path in rules if rule.matches(event))

    assert route({"type": "gadget"}) == "/gadgets"
    assert route({"type": "widget"}) == "/widgets"
    assert route({"type": "other"}) == "/products"
    assert route({}) == "/products"  # missing field: the rules fail, the catch-all holds


def test_compiled_rule_keeps_its_text_and_blank_text_always_matches() -> None:
    rule = compile_rule("event.type == 'x'")
    assert isinstance(rule, Rule)
    assert rule.text == "event.type == 'x'"
    assert compile_rule("   ").matches({}) is True


# --- literals, access, operators ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # literals and escapes
        "'it\\'s' == \"it's\"",
        '"a\\tb" == "a\\u0009b"',
        '"\\x41\\101\\U00000041" == "AAA"',
        "r'\\d' == '\\\\d'",
        "0x1F == 31",
        "1e3 == 1000",
        ".5 == 0.5",
        "null == null",
        "[1, 2] == [1, 2.0]",
        "[] == []",
        "-9223372036854775808 < 0",
        # member and index access
        "event.data.items[0].sku == 'A-1'",
        "event.data.items[1]['qty'] == 1",
        "event['type'] == 'deposit'",
        "event.data.meta['my-key'] == 'v'",
        "event.traceparent.startsWith('00-')",
        "event.data.note == null",
        "has(event.data.note)",
        "!has(event.data.absent)",
        "has(event.data.meta.count)",
        # arithmetic
        "1 + 2 * 3 == 7",
        "(1 + 2) * 3 == 9",
        "10 - 4 - 3 == 3",
        "7 / 2 == 3",
        "-7 / 2 == -3",
        "-7 % 3 == -1",
        "7 % -3 == 1",
        "7.0 / 2 == 3.5",
        "event.data.amount * 2 == 25000",
        "event.data.rate * 4 == 1",
        "-event.data.amount < 0",
        "'ab' + 'cd' == 'abcd'",
        "[1] + [2] == [1, 2]",
        "1.0 / 0.0 > 1e308",
        # comparisons
        "1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3",
        "1 == 1.0 && 2 > 1.5 && 1.5 < 2",
        "'apple' < 'banana'",
        "false < true",
        "1 < 2 == true",  # relations are one level, left to right
        # membership
        "'vip' in event.data.tags",
        "!('us' in event.data.tags)",
        "2 in [1.0, 2.0]",
        "'count' in event.data.meta",
        "'topic' in event",
        # logic and conditional
        "true || false && false",
        "!(true && false)",
        "!!true",
        "event.data.amount > 100 ? event.type == 'deposit' : false",
        "false ? false : true ? true : false",  # right-associative
        "(event.data.amount > 1 ? 'big' : 'small') == 'big'",
        # functions and methods
        "size('héllo') == 5",
        "size(event.data.tags) == 2 && event.data.tags.size() == 2",
        "size(event.data.meta) == 2",
        "event.source.startsWith('bank/')",
        "event.source.endsWith('-7')",
        "event.data.text.contains('World')",
        "event.data.text.matches('W.rld')",  # a search, not a full match
        "matches(event.source, '^bank/branch-[0-9]+$')",
        "int('42') == 42 && int(3.9) == 3 && int(-3.9) == -3 && int(7) == 7",
        "double('2.5') == 2.5 && double(2) == 2.0",
        "string(12) == '12' && string(true) == 'true' && string('s') == 's'",
        "string(2.5) == '2.5' && string(100.0) == '100' && string(1e6) == '1e+06'",
        "string(event.data.amount) == '12500'",
    ],
)
def test_expression_holds(text: str) -> None:
    assert holds(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "1 + 2 * 3 == 9",
        "true && false || false",
        "'1' == 1",  # no implicit string/number conversion
        "true == 1",  # a bool is not a number
        "null == 0",
        "[1, 2] == [2, 1]",
        "event.data.tags == ['vip']",
        "'VIP' in event.data.tags",
        "event.source.startsWith('branch')",
        "event.data.text.matches('^World')",
        "event.type != 'deposit'",
    ],
)
def test_expression_does_not_hold(text: str) -> None:
    assert holds(text) is False


# --- errors at evaluation: no match, never an exception ------------------------


@pytest.mark.parametrize(
    "text",
    [
        "event.data.absent == 1",
        "event.absent.deeper == 1",
        "event.data.absent != 1",  # an error, not "not equal"
        "!(event.data.absent == 1)",
        "has(event.absent.x)",
        "event.data.items[5].sku == 'x'",
        "event.data.items[-1].sku == 'x'",
        "event.data.meta['nope'] == 'x'",
        "event.type.length == 1",  # field of a string
        "event.data.amount > 'a'",  # ordering across kinds
        "'a' + 1 == 'a1'",
        "1 / 0 == 0",
        "1 % 0 == 0",
        "1.5 % 1 == 0.5",
        "9223372036854775807 + 1 > 0",
        "int('4.2') == 4",
        "int('') == 0",
        "double('x') == 1.0",
        "event.data.amount.startsWith('1')",
        "size(event.data.amount) == 1",
        "'a' in 'abc'",
        "event.data.amount && true",
        "event.data.amount ? true : true",
        "event.data.text.matches(event.data.meta['my-key'] + '[')",  # bad runtime pattern
        "event.type",  # not a bool once evaluated
    ],
)
def test_evaluation_error_means_no_match_and_never_raises(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="daprlite.pubsub"):
        assert holds(text) is False
    assert any(text in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("false && event.absent", False),
        ("event.absent && false", False),  # CEL absorbs the error from either side
        ("true || event.absent", True),
        ("event.absent || true", True),
        ("event.absent == 1 || event.type == 'deposit'", True),
        ("event.type == 'deposit' && event.absent == 1", False),  # error → no match
        ("true && event.absent", False),
        ("event.absent || false", False),
        ("!has(event.data.x) || event.data.x > 3", True),
        ("has(event.data.x) && event.data.x > 3", False),
        ("false ? event.absent : true", True),  # only the chosen branch runs
    ],
)
def test_and_or_short_circuit_and_absorb_errors_the_cel_way(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_data_that_is_not_a_map_does_not_match() -> None:
    # Dapr can only look into JSON data that is an object, not JSON escaped in a string.
    assert holds("event.data.amount > 1", {"data": '{"amount": 5}'}) is False
    assert holds("has(event.data.amount)", {"data": [1]}) is False


# --- compile errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("event.type ==", "end of the rule"),
        ("event.type = 'x'", "'=' at column 12"),
        ("event.type == 'x", "unterminated string at column 15"),
        ("(event.type == 'x'", "expected ')'"),
        ("event.type == 'x')", "')' at column 18"),
        ("evnt.type == 'x'", "unknown name 'evnt' at column 1"),
        ("event.type == x", "unknown name 'x' at column 15"),
        ("lower(event.type) == 'x'", "unknown function lower() at column 1"),
        ("event.type.lower() == 'x'", "unknown method .lower() at column 12"),
        ("size(event.type, 1) == 1", "takes 1 argument"),
        ("event.type.startsWith() ", "takes 1 argument"),
        ("has(event) ", "has() at column 1 needs a field selection"),
        ("has(event.data['x'])", "has() at column 1"),
        ("event.type.matches('[') ", "bad regular expression at column 12"),
        ("'\\q' == 'q'", "unknown escape"),
        ("event.data.x == 9223372036854775808", "does not fit in 64 bits"),
        ("event.data.x == 1 $", "unexpected '$' at column 19"),
        ("event.1 == 1", "unexpected '.1' at column 6"),
        ("event.true == 1", "field name after '.'"),
        ("event.type == 'a' ? 1", "expected ':'"),
        ("event.data.amount + 1", "must be a condition"),
        ("'text'", "must be a condition"),
        ("size(event.data.tags)", "must be a condition"),
        ("(" * 150 + "true" + ")" * 150, "nested too deeply"),
        (" || ".join(["true"] * 150), "nested too deeply"),
        ("size(" * 60 + "'x'" + ")" * 60 + " == 1", "nested too deeply"),
        ("[" * 60 + "]" * 60 + " == []", "nested too deeply"),
        ("!" * 150 + "true", "nested too deeply"),
        ("false ? true : " * 60 + "true", "nested too deeply"),
        ("true ? true ? 1 : 2 : 3", "expected ':'"),  # CEL wants parentheses here
    ],
)
def test_compile_error_names_the_problem_and_position(text: str, fragment: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule(text)
    assert fragment in str(info.value)


def test_rule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_rule("event.")


def test_moderately_long_rules_compile_and_evaluate() -> None:
    text = " || ".join(f"event.type == 't{i}'" for i in range(40))
    rule = compile_rule(text)
    assert rule.matches({"type": "t39"}) is True
    assert rule.matches({"type": "t40"}) is False


def test_deeply_nested_event_data_costs_only_the_rule() -> None:
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    assert holds("event.data == event.data", {"data": deep}) is False
