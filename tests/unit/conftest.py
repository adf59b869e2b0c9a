"""Unit tests of actions against the one fake of the gateway: ``cloud`` (tests/unit/fake_cloud) and contexts using it."""

from __future__ import annotations

import pytest

from cloudstack_cpi.context import CallContext
from tests.conftest import write_config
from tests.unit.fake_cloud import FakeGateway

URL = "http://cs.test/client/api"


class _NoClient:
    """Actions reach CloudStack only through ``ctx.cloud``: any use of the client fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"an action used ctx.client.{name}: it must go through the gateway (ctx.cloud)")


@pytest.fixture
def cloud() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def make_ctx(tmp_path, cloud):
    """``make_ctx(api_version=2, director_uuid=..., **cloudstack_config)``: a CallContext whose gateway is the fake;
    its log is the fake's (``cloud.log_text``)."""
    made = []

    def make(api_version: int = 2, director_uuid: str | None = "director-uuid-1", **cloudstack) -> CallContext:
        config = write_config(tmp_path / f"cpi-{len(made)}.json", URL, "the-key", "the-secret-value", **cloudstack)
        context = {"director_uuid": director_uuid} if director_uuid else {}
        ctx = CallContext(method="test", api_version=api_version, context=context, config_path=str(config),
                          log=cloud.log)
        ctx.cloud = cloud  # type: ignore[misc]
        ctx.client = _NoClient()  # type: ignore[misc, assignment]
        made.append(ctx)
        return ctx

    return make


@pytest.fixture
def ctx(make_ctx) -> CallContext:
    return make_ctx()
