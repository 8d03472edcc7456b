"""Access control, API lists and mTLS settings: parsing, matching, certificate issuing."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from daprlite.config.configuration import build_configuration
from daprlite.config.resources import Resource, ResourceError
from daprlite.security.acl import Identity
from daprlite.security.ca import CAError, create_ca, load_ca, write_ca
from daprlite.security.mtls import (
    LocalCASource,
    MTLSSpec,
    WorkloadIdentity,
    dns_name,
    parse_spiffe_id,
    peer_identity,
)


def config(spec: dict[str, object]) -> Resource:
    return Resource(
        kind="Configuration", name="cfg", api_version="dapr.io/v1alpha1", spec=spec, source="c.yaml"
    )


ACL = {
    "accessControl": {
        "defaultAction": "deny",
        "trustDomain": "public",
        "policies": [
            {
                "appId": "caller",
                "defaultAction": "deny",
                "namespace": "default",
                "operations": [
                    {"name": "/public/**", "httpVerb": ["*"], "action": "allow"},
                    {"name": "/orders/*", "httpVerb": ["GET"], "action": "allow"},
                    {"name": "/orders/secret", "httpVerb": ["*"], "action": "deny"},
                ],
            },
            {"appId": "friend", "defaultAction": "allow", "namespace": "default"},
        ],
    }
}
CALLER = Identity("public", "default", "caller")


@pytest.mark.parametrize(
    ("method", "verb", "allowed"),
    [
        ("public", "GET", True),  # ** matches zero segments too
        ("public/a/b/c", "DELETE", True),
        ("orders/1", "GET", True),
        ("orders/1", "POST", False),  # verb not listed: the policy default (deny)
        ("orders/1/items", "GET", False),  # * is one segment only
        ("orders/secret", "GET", False),  # the more specific operation wins
        ("admin", "GET", False),
    ],
)
def test_operations_match_by_path_and_verb(method: str, verb: str, allowed: bool) -> None:
    acl = build_configuration([config(ACL)]).access_control
    assert acl.allows(CALLER, method, verb, check_verb=True) is allowed


def test_grpc_apps_ignore_verbs() -> None:
    acl = build_configuration([config(ACL)]).access_control
    assert acl.allows(CALLER, "orders/1", "NONE", check_verb=False)


def test_caller_precedence_and_unverified_callers() -> None:
    acl = build_configuration([config(ACL)]).access_control
    assert acl.allows(Identity("public", "default", "friend"), "anything", "GET", True)
    # No policy for this caller: the global default.
    assert not acl.allows(Identity("public", "default", "stranger"), "public", "GET", True)
    # Another trust domain or namespace is another caller.
    assert not acl.allows(Identity("other", "default", "caller"), "public", "GET", True)
    assert not acl.allows(Identity("public", "prod", "caller"), "public", "GET", True)
    # Without a proven identity only the global default applies.
    assert not acl.allows(None, "public", "GET", True)


def test_defaults_without_and_with_policies() -> None:
    assert build_configuration([]).access_control.allows(None, "x", "GET", True)
    only_policies = {"accessControl": {"policies": [{"appId": "a"}]}}
    acl = build_configuration([config(only_policies)]).access_control
    assert acl.default_action == "deny"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"accessControl": {"defaultAction": "maybe"}}, "spec.accessControl.defaultAction"),
        ({"accessControl": {"policies": [{}]}}, "spec.accessControl.policies[0].appId"),
        (
            {"accessControl": {"policies": [{"appId": "a", "operations": [{"action": "allow"}]}]}},
            "spec.accessControl.policies[0].operations[0].name",
        ),
        (
            {
                "accessControl": {
                    "policies": [{"appId": "a", "operations": [{"name": "/x", "action": "no"}]}]
                }
            },
            "spec.accessControl.policies[0].operations[0].action",
        ),
        (
            {"accessControl": {"policies": [{"appId": "a"}, {"appId": "a"}]}},
            "spec.accessControl.policies[1]",
        ),
        ({"api": {"allowed": [{"name": "state"}]}}, "spec.api.allowed[0].version"),
        (
            {"api": {"denied": [{"name": "state", "version": "v1", "protocol": "smtp"}]}},
            "spec.api.denied[0].protocol",
        ),
        ({"mtls": {"workloadCertTTL": "soon"}}, "spec.mtls.workloadCertTTL"),
        ({"mtls": {"enabled": "yes"}}, "spec.mtls.enabled"),
    ],
)
def test_bad_configuration_names_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ResourceError) as err:
        build_configuration([config(spec)])
    assert field in str(err.value)


def test_api_lists_for_http_routes_and_grpc_methods() -> None:
    lists = build_configuration(
        [
            config(
                {
                    "api": {
                        "allowed": [
                            {"name": "state", "version": "v1.0"},
                            {"name": "state", "version": "v1alpha1"},
                            {"name": "metadata", "version": "v1", "protocol": "grpc"},
                            {"name": "state", "version": "v1", "protocol": "grpc"},
                        ],
                        "denied": [{"name": "state", "version": "v1alpha1", "protocol": "grpc"}],
                    }
                }
            )
        ]
    ).api_lists
    assert lists.allows_http_path("/v1.0/state/{name}")
    assert lists.allows_http_path("/v1.0-alpha1/state/{name}/query")
    assert not lists.allows_http_path("/v1.0/secrets/{store}/{key}")
    assert not lists.allows_http_path("/v1.0/invoke/{id}/method/{method:.*}")
    assert lists.allows_http_path("/v1.0/healthz")  # always open
    assert lists.allows_grpc_method("/dapr.proto.runtime.v1.Dapr/GetState", proxied=False)
    assert lists.allows_grpc_method("/dapr.proto.runtime.v1.Dapr/GetMetadata", proxied=False)
    # Denied beats allowed, and versions come from the method name.
    assert not lists.allows_grpc_method(
        "/dapr.proto.runtime.v1.Dapr/QueryStateAlpha1", proxied=False
    )
    assert not lists.allows_grpc_method("/dapr.proto.runtime.v1.Dapr/GetSecret", proxied=False)
    assert not lists.allows_grpc_method("/my.Service/Hello", proxied=True)  # proxying = invoke


def test_mtls_settings() -> None:
    spec = build_configuration(
        [config({"mtls": {"enabled": True, "workloadCertTTL": "1h", "allowedClockSkew": "1m"}})]
    ).mtls
    assert spec.enabled is True
    assert spec.workload_cert_ttl == dt.timedelta(hours=1)
    assert spec.allowed_clock_skew == dt.timedelta(minutes=1)


def test_spiffe_ids_are_parsed_strictly() -> None:
    assert parse_spiffe_id("spiffe://public/ns/default/orders") == Identity(
        "public", "default", "orders"
    )
    for bad in ("spiffe://public/orders", "https://public/ns/default/orders", ""):
        assert parse_spiffe_id(bad) is None
    # Exactly one URI SAN, or no identity.
    two = {"subjectAltName": (("URI", "spiffe://a/ns/b/c"), ("URI", "spiffe://a/ns/b/d"))}
    assert peer_identity(two) is None
    assert peer_identity({}) is None


def test_ca_files_and_workload_certificates(tmp_path: Path) -> None:
    write_ca(create_ca(), tmp_path / "certs")
    assert (tmp_path / "certs" / "ca.key").stat().st_mode & 0o777 == 0o600
    ca = load_ca(tmp_path / "certs")
    issued = ca.issue_pem(
        "spiffe://public/ns/default/orders",
        dt.timedelta(minutes=5),
        dt.timedelta(minutes=15),
        (dns_name("orders", "default"),),
    )
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/default/orders"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["orders.default.daprlite"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(minutes=20)  # ttl + the clock-skew allowance
    cert.verify_directly_issued_by(ca.cert)


def test_a_key_that_does_not_match_the_ca_is_refused(tmp_path: Path) -> None:
    write_ca(create_ca(), tmp_path / "a")
    write_ca(create_ca(), tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(CAError, match="does not belong"):
        load_ca(tmp_path / "a")
    with pytest.raises(CAError, match="cannot load"):
        load_ca(tmp_path / "missing")


async def test_workload_identity_renews_its_certificate(tmp_path: Path) -> None:
    write_ca(create_ca(), tmp_path / "certs")
    identity = WorkloadIdentity(
        Identity("public", "default", "orders"),
        LocalCASource(tmp_path / "certs"),
        MTLSSpec(workload_cert_ttl=dt.timedelta(seconds=1)),
    )
    await identity.start()
    try:
        first = identity.current
        assert first is not None
        assert identity.server_context.verify_mode == ssl.CERT_REQUIRED
        # Only the daprlite CA vouches for peers: not the system's CA store.
        for ctx in (identity.server_context, identity.client_context):
            assert ctx.cert_store_stats()["x509_ca"] == 1
            assert ctx.verify_mode == ssl.CERT_REQUIRED
        default = ssl.create_default_context()
        assert default.cert_store_stats()["x509_ca"] > 1  # what the check above guards against
        for _ in range(50):
            await asyncio.sleep(0.1)
            if identity.current is not first:
                break
        assert identity.current is not first
        assert identity.current is not None and identity.current.cert_pem != first.cert_pem
    finally:
        await identity.close()
