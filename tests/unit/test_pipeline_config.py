"""``spec.httpPipeline`` / ``spec.appHttpPipeline``: parsed, merged, and resolved to components.

Configuration files are real YAML read by the resource loader, as ``--config``
would; the pipelines are built over real, initialised ``middleware.http.ratelimit``
components in a component store, as the sidecar builds them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from daprlite.blocks.invoke.model import Caller
from daprlite.blocks.middleware import (
    APP_FIELD,
    Pipeline,
    PipelineError,
    Refusal,
    configure_pipelines,
    invocation_client,
)
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.middleware.api import MiddlewareRequest, PipelineSpec
from daprlite.components.middleware.bearer import BearerMiddleware
from daprlite.components.middleware.ratelimit import RateLimitMiddleware
from daprlite.config.configuration import Configuration, build_configuration
from daprlite.config.resources import Resource, ResourceError, ResourceLoader, Resources
from daprlite.runtime.registry import ComponentStore, LiveComponent


def configurations(tmp_path: Path, *specs: str) -> list[Resource]:
    out = Resources()
    for i, spec in enumerate(specs):
        path = tmp_path / f"config{i}.yaml"
        body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
        path.write_text(
            f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\n"
            f"metadata:\n  name: config{i}\nspec:\n{body}\n"
        )
        ResourceLoader("app").load_file(path, out)
    return out.configurations


def test_no_pipeline_sections_mean_empty_pipelines(tmp_path: Path) -> None:
    config = build_configuration(configurations(tmp_path, "tracing:\n  samplingRate: '1'"))
    assert config.http_pipeline == () and config.app_http_pipeline == ()


def test_handlers_keep_their_order_name_type_and_selector(tmp_path: Path) -> None:
    res = configurations(
        tmp_path,
        """
        httpPipeline:
          handlers:
            - name: limit
              type: middleware.http.ratelimit
        appHttpPipeline:
          handlers:
            - name: bearer
              type: middleware.http.bearer
              selector:
                fields:
                  - field: path
                    value: /orders
            - name: limit
              type: middleware.http.ratelimit
        """,
    )
    config = build_configuration(res)
    assert config.http_pipeline == (PipelineSpec("limit", "middleware.http.ratelimit"),)
    assert config.app_http_pipeline == (
        PipelineSpec("bearer", "middleware.http.bearer", (("path", "/orders"),)),
        PipelineSpec("limit", "middleware.http.ratelimit"),
    )


def test_a_later_configuration_replaces_a_pipeline_whole_and_keeps_the_other(
    tmp_path: Path,
) -> None:
    res = configurations(
        tmp_path,
        """
        httpPipeline:
          handlers: [{name: a, type: middleware.http.ratelimit}]
        appHttpPipeline:
          handlers: [{name: b, type: middleware.http.ratelimit}]
        """,
        """
        appHttpPipeline:
          handlers: [{name: c, type: middleware.http.bearer}]
        """,
    )
    config = build_configuration(res)
    assert [h.name for h in config.http_pipeline] == ["a"]
    assert [h.name for h in config.app_http_pipeline] == ["c"]


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        ("httpPipeline: [a, b]", "spec.httpPipeline", "expected a mapping"),
        ("appHttpPipeline:\n  handlers: {a: b}", "spec.appHttpPipeline.handlers", "a list"),
        ("appHttpPipeline:\n  handlers: [x]", "spec.appHttpPipeline.handlers[0]", "mapping"),
        (
            "appHttpPipeline:\n  handlers:\n    - {type: middleware.http.ratelimit}",
            "spec.appHttpPipeline.handlers[0].name",
            "is required",
        ),
        (
            "appHttpPipeline:\n  handlers:\n    - {name: a, type: middleware.http.ratelimit}\n"
            "    - {name: s, type: state.redis}",
            "spec.appHttpPipeline.handlers[1].type",
            "'state.redis'",
        ),
        (
            "httpPipeline:\n  handlers:\n    - {name: a}",
            "spec.httpPipeline.handlers[0].type",
            "None",
        ),
        (
            "httpPipeline:\n  handlers:\n    - {name: a, type: middleware.http.x, selector: [1]}",
            "spec.httpPipeline.handlers[0].selector",
            "fields",
        ),
        (
            "httpPipeline:\n  handlers:\n    - name: a\n      type: middleware.http.x\n"
            "      selector: {fields: [{value: v}]}",
            "spec.httpPipeline.handlers[0].selector.fields[0].field",
            "is required",
        ),
    ],
)
def test_bad_pipelines_are_refused_naming_the_field(
    tmp_path: Path, spec: str, field: str, problem: str
) -> None:
    res = configurations(tmp_path, spec)
    with pytest.raises(ResourceError) as err:
        build_configuration(res)
    assert err.value.field == field
    assert problem in str(err.value)
    assert "config0.yaml" in str(err.value) and "Configuration 'config0'" in str(err.value)


async def _ratelimit(name: str, rps: str, burst: str) -> LiveComponent:
    instance = RateLimitMiddleware()
    props = {"maxRequestsPerSecond": rps, "burst": burst}
    await instance.init(ComponentMetadata(name, "middleware.http.ratelimit", properties=props))
    return LiveComponent(
        name, "middleware.http.ratelimit", "v1", "middleware.http", instance, props
    )


async def _store(*components: LiveComponent) -> ComponentStore:
    store = ComponentStore()
    for c in components:
        store.add(c)
    return store


async def test_a_handler_naming_a_component_that_is_not_loaded_names_the_field() -> None:
    store = await _store(await _ratelimit("limit", "5", "5"))
    config = Configuration(
        app_http_pipeline=(
            PipelineSpec("limit", "middleware.http.ratelimit"),
            PipelineSpec("missing", "middleware.http.ratelimit"),
        )
    )
    with pytest.raises(PipelineError) as err:
        await configure_pipelines(config, store, Pipeline("spec.httpPipeline"), Pipeline(APP_FIELD))
    assert err.value.field == "spec.appHttpPipeline.handlers[1].name"
    assert "'missing'" in str(err.value) and "loaded middleware: limit" in str(err.value)


async def test_a_handler_whose_type_differs_from_the_component_names_the_field() -> None:
    store = await _store(await _ratelimit("limit", "5", "5"))
    config = Configuration(http_pipeline=(PipelineSpec("limit", "middleware.http.bearer"),))
    with pytest.raises(PipelineError) as err:
        await configure_pipelines(config, store, Pipeline("spec.httpPipeline"), Pipeline(APP_FIELD))
    assert err.value.field == "spec.httpPipeline.handlers[0].type"
    assert "'middleware.http.ratelimit', not 'middleware.http.bearer'" in str(err.value)


async def test_handlers_run_in_order_and_the_first_refusal_stops_the_request() -> None:
    roomy, tight = await _ratelimit("roomy", "100", "100"), await _ratelimit("tight", "1", "1")
    store = await _store(roomy, tight)
    pipeline = Pipeline(APP_FIELD)
    pipeline.configure(
        [PipelineSpec("tight", "middleware.http.ratelimit"), PipelineSpec("roomy", tight.type)],
        store,
    )
    assert pipeline.names == ("tight", "roomy")
    req = MiddlewareRequest("GET", "/orders/1", "", (("x-a", "1"),), "caller.default")
    passed = await pipeline.screen(req)
    assert passed == req
    refused = await pipeline.screen(req)
    assert isinstance(refused, Refusal)
    assert refused.status == 429 and refused.content_type == "application/json"
    assert json.loads(refused.body)["errorCode"] == "ERR_RATE_LIMITED"
    assert ("retry-after", "1") in refused.headers
    # The second handler only ever saw the request that passed the first one.
    assert isinstance(roomy.instance, RateLimitMiddleware)
    assert roomy.instance.tracked_clients == 1
    # Another caller has its own bucket.
    other = MiddlewareRequest("GET", "/orders/1", "", (), invocation_client(Caller("other")))
    assert await pipeline.screen(other) == other


def test_an_invocation_is_keyed_on_a_proven_app_id_else_on_the_callers_address() -> None:
    assert invocation_client(Caller("orders", "prod", verified=True), "10.0.0.7") == "orders.prod"
    assert invocation_client(Caller("orders"), "10.0.0.7") == "10.0.0.7"
    assert invocation_client(Caller("orders")) == "orders.default"


async def test_an_empty_pipeline_passes_requests_unchanged() -> None:
    pipeline = Pipeline(APP_FIELD)
    pipeline.configure((), ComponentStore())
    assert pipeline.empty
    request = MiddlewareRequest("GET", "/x", "", (("a", "b"),), "me")
    assert await pipeline.run(request) is request


class _Broken:
    """A middleware with a bug: the pipeline must refuse rather than let the call through."""

    async def init(self, metadata: ComponentMetadata) -> None: ...

    async def handle(self, request: MiddlewareRequest) -> MiddlewareRequest:
        raise KeyError("bug")

    async def close(self) -> None: ...


async def test_a_failing_middleware_refuses_the_request_with_a_500_and_no_detail() -> None:
    store = ComponentStore()
    store.add(LiveComponent("broken", "middleware.http.broken", "v1", "middleware.http", _Broken()))
    pipeline = Pipeline(APP_FIELD)
    pipeline.configure([PipelineSpec("broken", "middleware.http.broken")], store)
    refused = await pipeline.screen(MiddlewareRequest("POST", "/x", "", (), "c"))
    assert isinstance(refused, Refusal) and refused.status == 500
    body = json.loads(refused.body)
    assert body["errorCode"] == "ERROR" and "'broken'" in body["message"]
    assert "bug" not in body["message"]


async def test_a_bearer_whose_auth_component_is_not_loaded_stops_start_up() -> None:
    bearer = BearerMiddleware()
    props = {"authComponent": "tokens"}
    await bearer.init(ComponentMetadata("bearer", "middleware.http.bearer", properties=props))
    store = ComponentStore()
    store.add(
        LiveComponent("bearer", "middleware.http.bearer", "v1", "middleware.http", bearer, props)
    )
    config = Configuration(app_http_pipeline=(PipelineSpec("bearer", "middleware.http.bearer"),))
    with pytest.raises(PipelineError) as err:
        await configure_pipelines(config, store, Pipeline("spec.httpPipeline"), Pipeline(APP_FIELD))
    assert err.value.field == "spec.appHttpPipeline.handlers[0].name"
    assert "'bearer' cannot start" in str(err.value) and "'tokens'" in str(err.value)
