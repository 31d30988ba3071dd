"""Risk rules in CEL: what is refused when saved (and why, by code), what a rule reads, how the
issue's examples decide, and that evaluation never raises whatever the data."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.risk.attributes import (
    ATTRIBUTES,
    LINK_WINDOWS,
    SUBJECTS,
    VELOCITY_WINDOWS,
    CelType,
    EventType,
    Family,
    attributes_for,
    families,
)
from paymux.risk.rules import (
    MAX_DEPTH,
    MAX_LENGTH,
    RuleErrorCode,
    RuleInvalid,
    RuleResult,
    _context,
    compile_rule,
    evaluate,
    evaluate_all,
)

LISTS = {
    "blocked_regions": frozenset({"KP", "XX-01"}),
    "office_nets": frozenset({"10.0.0.0/8", "172.16.4.0/22", "198.51.100.7", "2001:db8::/32"}),
    "hot_skus": frozenset({"sku_card_100"}),
}


def refused(expression: str, event: str = "payment.create") -> RuleInvalid:
    with pytest.raises(RuleInvalid) as info:
        compile_rule(expression, event)
    return info.value


class TestAttributes:
    def test_velocity_names_are_every_window_of_every_subject(self) -> None:
        attrs = attributes_for("payment.create")
        for window in VELOCITY_WINDOWS:
            for subject in ("customer", "device", "ip", "sku", "merchant"):
                assert f"count_payments_{subject}_{window}" in attrs
                assert f"sum_payments_{subject}_{window}" in attrs
                assert f"count_declined_{subject}_{window}" in attrs
                assert f"count_blocked_{subject}_{window}" in attrs
        assert attrs["count_payments_device_1h"].family is Family.velocity
        assert attrs["sum_payments_customer_24h"].type is CelType.int

    def test_payer_account_is_known_only_once_the_channel_answered(self) -> None:
        assert "count_payments_payer_account_1h" not in attributes_for("payment.create")
        assert "count_payments_payer_account_1h" in attributes_for("payment.succeeded")
        assert "payer_account" in [s.name for s in SUBJECTS]

    def test_links_and_families(self) -> None:
        attrs = attributes_for("payment.create")
        for window in LINK_WINDOWS:
            assert attrs[f"distinct_customers_per_device_{window}"].family is Family.link
        assert attrs["customer.is_new"].family is Family.customer
        assert attrs["local_hour"].family is Family.time
        assert families("payment.create", {"amount", "count_payments_ip_10m"}) == {
            Family.request,
            Family.velocity,
        }

    def test_every_attribute_documents_a_typed_example(self) -> None:
        python = {CelType.int: int, CelType.double: float, CelType.string: str, CelType.bool: bool}
        for event in EventType:
            for attr in ATTRIBUTES[event].values():
                assert attr.description
                assert type(attr.example) is python[attr.type], attr.name

    def test_money_out_has_no_payment_only_attributes(self) -> None:
        payout = attributes_for("payout.create")
        assert "sku" not in payout and "count_payments_device_1h" not in payout
        assert "count_payouts_customer_24h" in payout and "sum_payouts_customer_24h" in payout


class TestCompileRefuses:
    def test_syntax_error_has_its_position(self) -> None:
        err = refused("amount >")
        assert err.code == RuleErrorCode.rule_syntax
        assert err.position == 8
        assert err.param == "expression"

    def test_empty(self) -> None:
        assert refused("  ").code == RuleErrorCode.rule_syntax

    def test_unknown_attribute(self) -> None:
        err = refused("amount > 1 && colour == 'red'")
        assert (err.code, err.position) == (RuleErrorCode.rule_unknown_attribute, 14)
        assert "colour" in err.message

    def test_unknown_field_and_bare_group(self) -> None:
        assert refused("customer.vip").code == RuleErrorCode.rule_unknown_attribute
        assert refused("customer['id'] == 'x'").code == RuleErrorCode.rule_unknown_attribute
        assert refused("amount.currency == 'CNY'").code == RuleErrorCode.rule_unknown_attribute

    def test_attribute_of_another_event(self) -> None:
        assert refused("sku == 'x'", "payout.create").code == RuleErrorCode.rule_unknown_attribute

    def test_unknown_functions(self) -> None:
        unknown = ("lookup(ip) == 1", "math.greatest([amount, 1]) > 3", "ip.reverse() == ''")
        for expression in unknown:
            assert refused(expression).code == RuleErrorCode.rule_unknown_function, expression

    def test_type_error(self) -> None:
        err = refused('amount + "1" > 5')
        assert err.code == RuleErrorCode.rule_type
        # A type error behind a bool is found too: the samples take both branches.
        err = refused("customer.is_new ? false : amount == 'x' + 1")
        assert err.code == RuleErrorCode.rule_type

    def test_equality_with_a_literal_of_another_type(self) -> None:
        # CEL answers `amount == "500"` with false rather than an error: refused at save.
        for expression in ('amount == "500"', "1 == currency", "customer.is_new != 1"):
            err = refused(expression)
            assert err.code == RuleErrorCode.rule_type, expression
            assert err.position is not None
        rule = compile_rule('amount == 500.0 && currency == "CNY" + ""', "payment.create")
        assert evaluate(rule, {"amount": 500, "currency": "CNY"}, LISTS).result is RuleResult.hit
        # The issue's spelling of the IP's region reads the attribute ip_region.
        rule = compile_rule('ip.region in list("blocked_regions") && ip != ""', "payment.create")
        assert rule.attributes == {"ip_region", "ip"} and rule.lists == {"blocked_regions"}
        lists = {"blocked_regions": frozenset({"KP"})}
        assert evaluate(rule, {"ip_region": "KP", "ip": "1.2.3.4"}, lists).result is RuleResult.hit
        assert refused("ip.country == 'KP'").code == RuleErrorCode.rule_unknown_attribute
        # A string whose text starts with b or r is a string; b"…" and rb'…' are bytes.
        for text in ('"banned"', "'BR'", '"rb"', "r'bank'"):
            rule = compile_rule(f"sku == {text}", "payment.create")
            assert rule.attributes == {"sku"}, text
        for text in ('b"banned"', "B'x'"):
            assert refused(f"sku == {text}").code == RuleErrorCode.rule_type, text

    def test_lists_and_networks_take_strings(self) -> None:
        assert refused('amount in list("hot_skus")').code == RuleErrorCode.rule_type
        assert refused('cidr_match(quantity, list("office_nets"))').code == RuleErrorCode.rule_type
        assert refused('cidr_match(amount, ["10.0.0.0/8"])').code == RuleErrorCode.rule_type

    def test_not_boolean(self) -> None:
        assert refused("amount * 2").code == RuleErrorCode.rule_not_boolean
        assert refused("currency").code == RuleErrorCode.rule_not_boolean

    def test_too_long_and_too_deep(self) -> None:
        long = " || ".join(["amount > 1"] * (MAX_LENGTH // 10))
        assert refused(long).code == RuleErrorCode.rule_too_long
        deep = "(" * (MAX_DEPTH + 1) + "amount > 1" + ")" * (MAX_DEPTH + 1)
        assert refused(deep).code == RuleErrorCode.rule_too_long
        shallow = "(" * MAX_DEPTH + "amount > 1" + ")" * MAX_DEPTH
        assert compile_rule(shallow, "payment.create").attributes == {"amount"}

    def test_list_needs_a_literal_name(self) -> None:
        assert refused("ip_region in list(currency)").code == RuleErrorCode.rule_syntax
        assert refused('ip_region in list("a", "b")').code == RuleErrorCode.rule_syntax

    def test_python_escapes(self) -> None:
        assert refused("__import__('os').system('id') == 0").code == (
            RuleErrorCode.rule_unknown_function
        )
        assert refused("ip.__class__ == 'str'").code == RuleErrorCode.rule_unknown_attribute
        assert refused("os.system('id') == 0").code == RuleErrorCode.rule_unknown_function
        assert refused("__builtins__ == 1").code == RuleErrorCode.rule_unknown_attribute
        assert refused(".amount > 1").code == RuleErrorCode.rule_syntax
        assert refused("ip in .amount").code == RuleErrorCode.rule_syntax
        # A raw string ends at its first quote: nothing after it hides from the check.
        assert refused(r'r"\" + secret == ""').code == RuleErrorCode.rule_unknown_attribute
        assert refused("__paymux_in_list(ip, 'x')").code == RuleErrorCode.rule_unknown_function

    def test_comprehension_variable_may_not_hide_an_attribute(self) -> None:
        assert refused("[1, 2].exists(amount, amount > 1)").code == RuleErrorCode.rule_syntax
        # ...nor be read outside its comprehension.
        err = refused("[1, 2].exists(x, x > 1) && x > 0")
        assert err.code == RuleErrorCode.rule_unknown_attribute


class TestCompileReads:
    def test_attributes_and_lists(self) -> None:
        rule = compile_rule(
            'amount > 500000 && customer.is_new && !(ip_region in list("blocked_regions"))'
            ' || cidr_match(ip, list("office_nets"))',
            "payment.create",
        )
        assert rule.attributes == {"amount", "customer.is_new", "ip_region", "ip"}
        assert rule.lists == {"blocked_regions", "office_nets"}
        assert rule.event is EventType.payment_create

    def test_method_receivers_and_macros(self) -> None:
        rule = compile_rule(
            'customer.id.startsWith("cus_") && [1, 2].exists(x, x < quantity) && has(customer.id)',
            "payment.create",
        )
        assert rule.attributes == {"customer.id", "quantity"}

    def test_standard_functions_are_allowed(self) -> None:
        rule = compile_rule(
            'size(user_agent) > 3 && user_agent.matches("(?i)curl") && string(amount) != ""'
            " && type(amount) == int && double(amount) / 100.0 > 1.0",
            "payment.create",
        )
        assert rule.attributes == {"user_agent", "amount"}

    def test_value_dependent_errors_are_left_to_run_time(self) -> None:
        # A division by a counter that is zero on some events is a run-time `error`, not a
        # reason to refuse the rule.
        rule = compile_rule("amount / count_payments_customer_24h > 1000", "payment.create")
        outcome = evaluate(rule, {"amount": 5000, "count_payments_customer_24h": 0}, LISTS)
        assert outcome.result is RuleResult.error


class TestIssueExamples:
    def test_large_amount_from_a_new_customer(self) -> None:
        rule = compile_rule("amount > 500000 && customer.is_new", "payment.create")
        base = {"amount": 600000, "customer.is_new": True, "customer.id": "cus_1"}
        assert evaluate(rule, base, LISTS).result is RuleResult.hit
        assert evaluate(rule, base | {"amount": 500000}, LISTS).result is RuleResult.no_hit
        assert evaluate(rule, base | {"customer.is_new": False}, LISTS).result is RuleResult.no_hit

    def test_blocked_region(self) -> None:
        rule = compile_rule('ip_region in list("blocked_regions")', "payment.create")
        assert evaluate(rule, {"ip_region": "KP"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip_region": "CN-44"}, LISTS).result is RuleResult.no_hit

    def test_list_forms_the_rewrite_does_not_cover_mean_the_same(self) -> None:
        # `in list(...)` after a higher-precedence operator, and a list used as a value, go
        # through the generic list() function: same answers.
        rule = compile_rule(
            'size(list("blocked_regions")) == 2 && (ip_region + "") in list("blocked_regions")',
            "payment.create",
        )
        assert evaluate(rule, {"ip_region": "XX-01"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip_region": "CN"}, LISTS).result is RuleResult.no_hit

    def test_device_velocity(self) -> None:
        rule = compile_rule("count_payments_device_1h > 5", "payment.create")
        assert evaluate(rule, {"count_payments_device_1h": 6}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"count_payments_device_1h": 5}, LISTS).result is RuleResult.no_hit

    def test_office_networks(self) -> None:
        rule = compile_rule('cidr_match(ip, list("office_nets"))', "payment.create")
        assert evaluate(rule, {"ip": "10.20.30.40"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip": "2001:db8::1"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip": "192.0.2.1"}, LISTS).result is RuleResult.no_hit
        assert evaluate(rule, {"ip": "172.16.7.255"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip": "172.16.8.0"}, LISTS).result is RuleResult.no_hit
        assert evaluate(rule, {"ip": "198.51.100.7"}, LISTS).result is RuleResult.hit
        assert evaluate(rule, {"ip": "198.51.100.8"}, LISTS).result is RuleResult.no_hit
        inline = compile_rule('cidr_match(ip, ["192.0.2.0/24"])', "payment.create")
        assert evaluate(inline, {"ip": "192.0.2.1"}, LISTS).result is RuleResult.hit


class TestRewrites:
    """The list forms compiled into direct set lookups answer exactly as the expression does
    through the generic ``list()`` function."""

    @settings(max_examples=200, deadline=None)
    @given(
        region=st.sampled_from(["KP", "XX-01", "CN-44", ""]),
        ip=st.sampled_from(["10.1.2.3", "192.0.2.1", "2001:db8::5", "::1"]),
        sku=st.sampled_from(["sku_card_100", "sku_other"]),
        hour=st.integers(0, 23),
    )
    def test_same_answers(self, region: str, ip: str, sku: str, hour: int) -> None:
        activation = {"ip_region": region, "ip": ip, "sku": sku, "local_hour": hour}
        for expression in (
            'ip_region in list("blocked_regions")',
            '!(ip_region in list("blocked_regions")) || local_hour < 6',
            'local_hour > 3 && sku in list("hot_skus") ? true'
            ' : ip_region in list("blocked_regions")',
            'cidr_match(ip, list("office_nets")) && [sku in list("hot_skus")][0]',
            'ip_region in list("blocked_regions") == (sku in list("hot_skus"))',
        ):
            rule = compile_rule(expression, "payment.create")
            assert rule.program.source != expression  # the fast form is what runs
            plain = cel.compile(expression).execute(_context(activation, LISTS))
            assert evaluate(rule, activation, LISTS).result is (
                RuleResult.hit if plain else RuleResult.no_hit
            ), expression


class TestRunTimeErrors:
    def test_missing_value(self) -> None:
        rule = compile_rule("amount > 500000 && customer.is_new", "payment.create")
        outcome = evaluate(rule, {"amount": 600000}, LISTS)
        assert outcome.result is RuleResult.error
        assert outcome.error is not None and "is_new" in outcome.error
        outcome = evaluate(rule, {"customer.is_new": True}, LISTS)
        assert outcome.result is RuleResult.error
        assert outcome.error is not None and "amount" in outcome.error

    def test_type_error_on_real_data(self) -> None:
        rule = compile_rule("count_payments_device_1h > 5", "payment.create")
        outcome = evaluate(rule, {"count_payments_device_1h": "six"}, LISTS)
        assert outcome.result is RuleResult.error

    def test_unknown_list_and_bad_ip(self) -> None:
        rule = compile_rule('ip_region in list("nope")', "payment.create")
        outcome = evaluate(rule, {"ip_region": "KP"}, LISTS)
        assert outcome.result is RuleResult.error
        assert outcome.error is not None and "nope" in outcome.error
        cidr = compile_rule('cidr_match(ip, list("office_nets"))', "payment.create")
        assert evaluate(cidr, {"ip": "not-an-ip"}, LISTS).result is RuleResult.error

    def test_division_by_zero(self) -> None:
        rule = compile_rule("100 / quantity > 1", "payment.create")
        assert evaluate(rule, {"quantity": 0}, LISTS).result is RuleResult.error
        assert evaluate(rule, {"quantity": 2}, LISTS).result is RuleResult.hit


class TestEvaluateAll:
    def test_each_rule_in_order_and_the_time(self) -> None:
        rules = [
            compile_rule("amount > 100", "payment.create"),
            compile_rule("amount > 10000", "payment.create"),
            compile_rule("customer.kyc_level >= 2", "payment.create"),
        ]
        evaluation = evaluate_all(rules, {"amount": 500}, LISTS)
        assert [o.result for o in evaluation.outcomes] == [
            RuleResult.hit,
            RuleResult.no_hit,
            RuleResult.error,
        ]
        assert evaluation.elapsed >= 0
        assert [r for r, _ in evaluation.results(rules)] == rules


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

_RULES = [
    compile_rule(expression, "payment.create")
    for expression in (
        "amount > 500000 && customer.is_new",
        'ip_region in list("blocked_regions")',
        "count_payments_device_1h > 5",
        'cidr_match(ip, list("office_nets")) || customer.kyc_level < 1',
        'sku in list("hot_skus") && quantity * 2 > 10 && customer.id.startsWith("c")',
        "100 / quantity > 1 || customer.age_days - 3 > local_hour",
        "size(user_agent) > 3 && user_agent.matches('curl')",
    )
]


@settings(max_examples=300, deadline=None)
@given(
    activation=st.dictionaries(
        st.sampled_from(
            ["amount", "customer.is_new", "customer.id", "customer.kyc_level", "customer.age_days"]
            + ["ip", "ip_region", "count_payments_device_1h", "sku", "quantity", "user_agent"]
            + ["local_hour", "customer", "customer.is_new.x"]
        ),
        _VALUES,
    )
)
def test_random_values_never_raise(activation: dict[str, Any]) -> None:
    evaluation = evaluate_all(_RULES, activation, LISTS)
    assert len(evaluation.outcomes) == len(_RULES)
    for rule in _RULES:
        outcome = evaluate(rule, activation, LISTS)
        assert outcome.result in RuleResult
        assert (outcome.error is None) == (outcome.result is not RuleResult.error)


# Random well-formed rules over the payment.create attributes: whatever compiles reads no
# attribute outside `.attributes`, and its compiled (rewritten) form answers like the plain
# expression run through the generic list() function.
_A = attributes_for("payment.create")
_INTS = st.sampled_from(["amount", "quantity", "local_hour", "customer.kyc_level"]) | st.integers(
    -5, 10**6
).map(str)
_STRS = st.sampled_from(["ip_region", "customer.id", "sku", "currency"]) | st.sampled_from(
    ['"KP"', "'CN-44'", 'r"x"']
)
_INT_EXPR = st.recursive(
    _INTS,
    lambda c: st.tuples(c, st.sampled_from(["+", "-", "*", "/", "%"]), c).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    ),
    max_leaves=3,
)
_BOOL_ATOM = (
    st.sampled_from(["customer.is_new", "customer.has_paid"])
    | st.tuples(_INT_EXPR, st.sampled_from(["<", ">", "==", "!=", ">="]), _INT_EXPR).map(" ".join)
    | st.tuples(_STRS, st.sampled_from(["==", "!="]), _STRS).map(" ".join)
    | _STRS.map(lambda s: f'{s} in list("blocked_regions")')
    | st.just('cidr_match(ip, list("office_nets"))')
    | st.just("[1, 2].exists(x, x < quantity)")
)
_BOOL_EXPR = st.recursive(
    _BOOL_ATOM,
    lambda c: (
        st.tuples(c, st.sampled_from(["&&", "||", "=="]), c).map(" ".join)
        | c.map(lambda x: f"!({x})")
        | st.tuples(c, c, c).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})")
    ),
    max_leaves=5,
)


@settings(max_examples=200, deadline=None)
@given(expression=_BOOL_EXPR, data=st.data())
def test_compiled_rules_read_what_they_declare_and_answer_like_plain_cel(
    expression: str, data: st.DataObject
) -> None:
    try:
        rule = compile_rule(expression, "payment.create")
    except RuleInvalid as err:
        assert err.code in (RuleErrorCode.rule_type, RuleErrorCode.rule_too_long), err.message
        return
    activation: dict[str, Any] = {}
    for name in rule.attributes:
        example = _A[name].example
        if isinstance(example, bool):
            activation[name] = data.draw(st.booleans())
        elif isinstance(example, int):
            activation[name] = data.draw(st.sampled_from([0, 1, 5, 600000, example]))
        elif name == "ip":
            activation[name] = data.draw(st.sampled_from(["10.0.0.1", "192.0.2.1"]))
        else:
            activation[name] = data.draw(st.sampled_from([example, "KP", "CN-44"]))
    outcome = evaluate(rule, activation, LISTS)
    assert not (outcome.error or "").startswith("missing attribute"), (expression, outcome)
    try:
        plain = cel.compile(expression).execute(_context(activation, LISTS))
        expected = (
            RuleResult.hit if plain is True else RuleResult.no_hit if plain is False else None
        ) or RuleResult.error
    except Exception:
        expected = RuleResult.error
    assert outcome.result is expected, (expression, activation, outcome)


def test_the_rules_module_loads_cel_without_its_command_line_tool() -> None:
    # `import cel` would bring typer, rich and prompt_toolkit into every API process; the
    # package imported afterwards (the `cel` tool, tests) still works on the same extension.
    code = (
        "import sys\n"
        "from paymux.risk.rules import compile_rule, evaluate\n"
        "rule = compile_rule('amount > 1', 'payment.create')\n"
        "assert evaluate(rule, {'amount': 2}, {}).result == 'hit'\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'prompt_toolkit'}\n"
        "assert not heavy, heavy\n"
        "import cel\n"
        "assert cel.evaluate('1 + 2') == 3\n"
        "assert evaluate(rule, {'amount': 0}, {}).result == 'no_hit'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
