"""Reading Resiliency resources: errors that name the field, and which policy a target gets."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from daprlite.config.resources import Resource, ResourceError
from daprlite.resiliency import Resiliency


def resource(spec: str, name: str = "shop", source: str = "res/resiliency.yaml") -> Resource:
    return Resource(
        kind="Resiliency",
        name=name,
        api_version="dapr.io/v1alpha1",
        spec=yaml.safe_load(textwrap.dedent(spec)) or {},
        source=source,
    )


def build(*specs: str) -> Resiliency:
    return Resiliency.build([resource(s, name=f"res{i}") for i, s in enumerate(specs)])


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        (
            "policies: {retries: {r: {maxRetries: -2}}}",
            "spec.policies.retries.r.maxRetries",
            "less than the minimum -1",
        ),
        (
            "policies: {retries: {r: {maxRetries: lots}}}",
            "spec.policies.retries.r.maxRetries",
            "whole number",
        ),
        ("policies: {retries: {r: {policy: linear}}}", "spec.policies.retries.r.policy", "linear"),
        (
            "policies: {retries: {r: {duration: 5 parsecs}}}",
            "spec.policies.retries.r.duration",
            "not a duration",
        ),
        (
            "policies: {retries: {r: {maxInterval: 0s, policy: exponential}}}",
            "spec.policies.retries.r.maxInterval",
            "longer than zero",
        ),
        (
            "policies: {retries: {r: {maxRetry: 3}}}",
            "spec.policies.retries.r.maxRetry",
            "unknown field",
        ),
        (
            "policies: {retries: {r: {matches: {httpStatusCodes: '500'}}}}",
            "spec.policies.retries.r.matches",
            "'matching'",
        ),
        (
            "policies: {retries: {r: {matching: {httpStatusCodes: '429,600'}}}}",
            "spec.policies.retries.r.matching.httpStatusCodes",
            "outside the valid codes 100-599",
        ),
        (
            "policies: {retries: {r: {matching: {httpStatusCodes: '504-502'}}}}",
            "spec.policies.retries.r.matching.httpStatusCodes",
            "ends before it starts",
        ),
        (
            "policies: {retries: {r: {matching: {httpStatusCodes: '5xx'}}}}",
            "spec.policies.retries.r.matching.httpStatusCodes",
            "'5xx' is not a code",
        ),
        (
            "policies: {retries: {r: {matching: {gRPCStatusCodes: '17'}}}}",
            "spec.policies.retries.r.matching.gRPCStatusCodes",
            "outside the valid codes 0-16",
        ),
        (
            "policies: {retries: {r: {matching: {gRPCStatusCodes: '1-2-3'}}}}",
            "spec.policies.retries.r.matching.gRPCStatusCodes",
            "not a code or a range",
        ),
        ("policies: {timeouts: {t: -1s}}", "spec.policies.timeouts.t", "negative"),
        ("policies: {timeouts: {t: soon}}", "spec.policies.timeouts.t", "not a duration"),
        ("policies: {timeouts: {t: [1s]}}", "spec.policies.timeouts.t", "expected a duration"),
        (
            "policies: {circuitBreakers: {cb: {trip: 'consecutiveFailures >'}}}",
            "spec.policies.circuitBreakers.cb.trip",
            "end of expression",
        ),
        (
            "policies: {circuitBreakers: {cb: {trip: 'failures > 3'}}}",
            "spec.policies.circuitBreakers.cb.trip",
            "unknown name 'failures'",
        ),
        (
            "policies: {circuitBreakers: {cb: {maxRequests: -1}}}",
            "spec.policies.circuitBreakers.cb.maxRequests",
            "minimum 0",
        ),
        (
            "policies: {circuitBreakers: {cb: {interval: often}}}",
            "spec.policies.circuitBreakers.cb.interval",
            "not a duration",
        ),
        ("policies: [timeouts]", "spec.policies", "expected a mapping"),
        ("policies: {timeout: {t: 1s}}", "spec.policies.timeout", "unknown field"),
        (
            "policies: {retries: {DaprBuiltInActorNotFoundRetries: {maxRetries: 9}}}",
            "spec.policies.retries.DaprBuiltInActorNotFoundRetries",
            "cannot be overridden",
        ),
        (
            "targets: {apps: {billing: {retry: missing}}}",
            "spec.targets.apps.billing.retry",
            "no retries policy named 'missing'",
        ),
        (
            "policies: {timeouts: {fast: 1s}}\n"
            "targets: {components: {db: {outbound: {circuitBreaker: fast}}}}",
            "spec.targets.components.db.outbound.circuitBreaker",
            "no circuitBreakers policy named 'fast'",
        ),
        (
            "targets: {components: {db: {sideways: {}}}}",
            "spec.targets.components.db.sideways",
            "unknown field",
        ),
        (
            "targets: {apps: {billing: {retries: r}}}",
            "spec.targets.apps.billing.retries",
            "unknown field",
        ),
        (
            "policies: {circuitBreakers: {cb: {}}}\n"
            "targets: {actors: {Cart: {circuitBreaker: cb}}}",
            "spec.targets.actors.Cart.circuitBreakerScope",
            "needs a scope",
        ),
    ],
)
def test_invalid_resiliency_names_file_resource_and_field(
    spec: str, field: str, problem: str
) -> None:
    with pytest.raises(ResourceError) as info:
        Resiliency.build([resource(spec)])
    err = info.value
    assert err.field == field
    assert err.source == "res/resiliency.yaml"
    assert err.resource == "Resiliency 'shop'"
    assert problem in str(err)


def test_policy_defined_twice_across_resources_names_both() -> None:
    first = resource("policies: {retries: {same: {}}}", name="first", source="a.yaml")
    second = resource("policies: {retries: {same: {}}}", name="second", source="b.yaml")
    with pytest.raises(ResourceError) as info:
        Resiliency.build([first, second])
    assert info.value.source == "b.yaml"
    assert info.value.field == "spec.policies.retries.same"
    assert "Resiliency 'first' in a.yaml" in str(info.value)


def test_target_may_use_a_policy_from_another_resource() -> None:
    res = build(
        "targets: {apps: {billing: {retry: shared}}}",
        "policies: {retries: {shared: {maxRetries: 2}}}",
    )
    assert res.app("billing").retry is not None
    assert res.app("billing").retry.name == "shared"
    assert res.names == ("res0", "res1")


def test_field_values_and_defaults_are_read() -> None:
    res = build(
        """
        policies:
          timeouts: {fast: 1m30s, bare: 250}
          retries:
            plain: {}
            exp: {policy: exponential, maxInterval: 10s, maxRetries: "7",
                  matching: {httpStatusCodes: "429, 500-504,", gRPCStatusCodes: 14}}
          circuitBreakers:
            plain: {}
            cb: {maxRequests: 0, interval: 8s, timeout: 45s, trip: consecutiveFailures > 8}
        targets:
          apps:
            a: {timeout: fast, retry: plain, circuitBreaker: plain}
            b: {timeout: bare, retry: exp, circuitBreaker: cb, circuitBreakerCacheSize: 50}
        """
    )
    a, b = res.app("a"), res.app("b")
    assert a.timeout == 90.0
    assert b.timeout == 0.25  # a bare number is milliseconds, as in Dapr
    assert a.retry is not None and b.retry is not None
    assert (a.retry.policy, a.retry.duration, a.retry.max_retries) == ("constant", 5.0, -1)
    assert (a.retry.http_statuses, a.retry.grpc_codes) == (None, None)
    assert (b.retry.policy, b.retry.max_interval, b.retry.max_retries) == ("exponential", 10.0, 7)
    assert b.retry.http_statuses is not None and b.retry.grpc_codes is not None
    assert b.retry.http_statuses.ranges == ((429, 429), (500, 504))
    assert b.retry.grpc_codes.ranges == ((14, 14),)
    assert a.breaker is not None and b.breaker is not None
    plain, cb = a.breaker.spec, b.breaker.spec
    assert (plain.max_requests, plain.interval, plain.timeout) == (1, 0.0, 60.0)
    assert plain.trip.text == "consecutiveFailures > 5"
    assert (cb.max_requests, cb.interval, cb.timeout) == (1, 8.0, 45.0)
    assert cb.trip.text == "consecutiveFailures > 8"


def test_no_resources_means_no_policies() -> None:
    res = Resiliency.build(())
    assert res.names == ()
    assert res.app("billing").is_noop
    assert res.component_outbound("db", "statestore").is_noop
    assert res.component_inbound("orders", "pubsub").is_noop
    assert not res.has_app_target("billing")


def test_named_target_beats_specific_default_beats_generic_default() -> None:
    res = build(
        """
        policies:
          retries:
            DefaultRetryPolicy: {maxRetries: 1}
            DefaultAppRetryPolicy: {maxRetries: 2}
            named: {maxRetries: 3}
        targets:
          apps: {billing: {retry: named}}
        """
    )
    assert res.has_app_target("billing")
    assert _retry_name(res.app("billing")) == "named"
    assert _retry_name(res.app("other")) == "DefaultAppRetryPolicy"
    assert _retry_name(res.component_outbound("db", "statestore")) == "DefaultRetryPolicy"


@pytest.mark.parametrize(
    ("defined", "outbound_statestore", "outbound_pubsub", "inbound_pubsub"),
    [
        (
            [
                "DefaultStatestoreComponentOutbound",
                "DefaultComponentOutbound",
                "DefaultComponentInbound",
                "DefaultComponent",
                "Default",
            ],
            "DefaultStatestoreComponentOutbound",
            "DefaultComponentOutbound",
            "DefaultComponentInbound",
        ),
        (
            ["DefaultPubsubComponentInbound", "DefaultComponent", "Default"],
            "DefaultComponent",
            "DefaultComponent",
            "DefaultPubsubComponentInbound",
        ),
        (["DefaultApp", "Default"], "Default", "Default", "Default"),
        (["DefaultApp"], None, None, None),
    ],
)
def test_component_defaults_go_from_most_specific_to_generic(
    defined: list[str],
    outbound_statestore: str | None,
    outbound_pubsub: str | None,
    inbound_pubsub: str | None,
) -> None:
    retries = "\n".join(f"    {d}RetryPolicy: {{maxRetries: 1}}" for d in defined)
    res = build(f"policies:\n  retries:\n{retries}\n")

    def picked(name: str | None) -> str | None:
        return f"{name}RetryPolicy" if name else None

    assert _retry_name(res.component_outbound("db", "statestore")) == picked(outbound_statestore)
    assert _retry_name(res.component_outbound("orders", "pubsub")) == picked(outbound_pubsub)
    assert _retry_name(res.component_inbound("orders", "pubsub")) == picked(inbound_pubsub)


def test_defaults_are_chosen_independently_per_policy_kind() -> None:
    res = build(
        """
        policies:
          timeouts: {DefaultAppTimeoutPolicy: 2s, DefaultTimeoutPolicy: 9s}
          retries: {DefaultRetryPolicy: {maxRetries: 1}}
          circuitBreakers: {DefaultComponentCircuitBreakerPolicy: {}}
        """
    )
    app = res.app("billing")
    assert app.timeout == 2.0
    assert _retry_name(app) == "DefaultRetryPolicy"
    assert app.breaker is None
    comp = res.component_outbound("db", "lock")
    assert comp.timeout == 9.0
    assert comp.breaker is not None
    assert comp.breaker.spec.name == "DefaultComponentCircuitBreakerPolicy"


def test_named_target_takes_no_defaults_for_kinds_it_leaves_out() -> None:
    res = build(
        """
        policies:
          timeouts: {DefaultTimeoutPolicy: 9s}
          retries: {r: {maxRetries: 1}}
        targets:
          apps: {billing: {retry: r}}
          components: {db: {outbound: {retry: r}}}
        """
    )
    assert res.app("billing").timeout is None
    assert res.app("other").timeout == 9.0
    assert res.component_outbound("db", "statestore").timeout is None
    # Only the outbound direction of db is named; inbound still gets the defaults.
    assert res.component_inbound("db", "binding").timeout == 9.0


def test_each_target_keeps_one_breaker() -> None:
    res = build(
        """
        policies:
          circuitBreakers: {DefaultCircuitBreakerPolicy: {}}
        """
    )
    assert res.app("billing").breaker is res.app("billing").breaker
    assert res.app("billing").breaker is not res.app("shipping").breaker
    out = res.component_outbound("orders", "pubsub").breaker
    inb = res.component_inbound("orders", "pubsub").breaker
    assert out is not None and inb is not None and out is not inb
    assert out is res.component_outbound("orders", "pubsub").breaker


def test_builtin_retries_have_dapr_defaults() -> None:
    res = Resiliency.build(())
    service = res.builtin("DaprBuiltInServiceRetries")
    assert service.retry is not None
    assert (service.retry.policy, service.retry.duration, service.retry.max_retries) == (
        "constant",
        1.0,
        3,
    )
    assert service.timeout is None and service.breaker is None
    init = res.builtin("DaprBuiltInInitializationRetries").retry
    assert init is not None
    assert (init.policy, init.initial_interval, init.max_retries, init.max_elapsed) == (
        "exponential",
        0.5,
        3,
        10.0,
    )
    with pytest.raises(ValueError, match="unknown built-in"):
        res.builtin("DaprBuiltInNothing")


def test_builtin_is_overridden_by_retry_policy_of_its_name_but_not_below_three() -> None:
    res = build(
        """
        policies:
          retries:
            DaprBuiltInServiceRetries: {duration: 5s, maxRetries: 10}
            DaprBuiltInInitializationRetries: {maxRetries: 1}
        """
    )
    service = res.builtin("DaprBuiltInServiceRetries").retry
    assert service is not None and (service.duration, service.max_retries) == (5.0, 10)
    init = res.builtin("DaprBuiltInInitializationRetries").retry
    assert init is not None and init.max_retries == 3


def test_unknown_component_kind_is_a_programming_error() -> None:
    res = Resiliency.build(())
    with pytest.raises(ValueError, match="unknown component kind"):
        res.component_outbound("db", "state")
    with pytest.raises(ValueError, match="pubsub or binding"):
        res.component_inbound("db", "statestore")


def _retry_name(policy: object) -> str | None:
    retry = getattr(policy, "retry", None)
    return retry.name if retry is not None else None
