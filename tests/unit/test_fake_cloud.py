"""The one fake of the gateway stays the gateway's twin: every service the real Gateway builds has a fake with the
same public methods and signatures, so an action tested on the fake calls what exists on the real one."""

from __future__ import annotations

import inspect
from functools import cached_property
from types import SimpleNamespace

from cloudstack_cpi import config
from cloudstack_cpi.cloudstack.gateway import Gateway
from tests.unit.fake_cloud import FakeGateway, FakeService


def parameters(function) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: what a caller relies on (return types differ: the fake answers simpler objects
    where the real answers a Pending)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def gateway_methods(cls: type) -> dict[str, list]:
    return {name: parameters(member) for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and not isinstance(member, (staticmethod, classmethod))}


def fake_methods(cls: type) -> dict[str, list]:
    """The fake's gateway methods are the recorded ones; the others arrange or read the fake's state."""
    return {name: parameters(member.__wrapped__) for name, member in vars(cls).items()
            if hasattr(member, "__wrapped__")}


def test_every_service_of_the_gateway_has_a_fake_with_the_same_methods():
    timeouts = config.parse({"cloudstack": {"endpoint": "http://cs.test/client/api", "api_key": "k",
                                            "secret_access_key": "s"}}).cloudstack.timeout
    real = Gateway(SimpleNamespace(log=None), timeouts)  # type: ignore[arg-type]
    fake = FakeGateway()
    services = [name for name, member in vars(Gateway).items() if isinstance(member, cached_property)]
    assert services, "the gateway builds its services as cached properties"
    for name in services:
        fake_service = fake.__dict__.get(name)
        assert isinstance(fake_service, FakeService), f"FakeGateway has no fake of the '{name}' service"
        real_methods = gateway_methods(type(getattr(real, name)))
        assert fake_methods(type(fake_service)) == real_methods, f"the fake '{name}' service differs from the real"
