"""The one fake of the CloudStack gateway (``cloudstack_cpi.cloudstack.gateway.Gateway``) for unit tests.

Actions are tested against it: each service holds its resources in memory as the gateway's own frozen models,
answers the same methods (``test_fake_cloud.py`` keeps the method sets equal to the real services'), records every
call (``cloud.calls``), and fails a method when a test asks (``cloud.fail``).  What CloudStack itself does on the
wire (recovery after lost answers, tags beside creates, "gone" rules, paging) is the real gateway's, tested against
the simulator in ``tests/unit/cloudstack/``; this fake keeps only the outcomes an action can see.

The generic parts of the gateway (``discard``, ``sleep``, ``clock``) are the real ones: the fake subclasses it.
"""

from __future__ import annotations

import functools
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cloudstack_cpi import schema
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import Gateway
from cloudstack_cpi.config import Timeouts
from cloudstack_cpi.log import Logger
from tests.fake_http import FakeHttp

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Call:
    method: str                 # "volumes.create"
    args: tuple
    kwargs: dict


@dataclass
class _Failure:
    error: Exception
    times: int | None           # None: every call from now on


def recorded(method: F) -> F:
    """Record the call on the fake and raise an injected failure instead of acting, if one is due."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        name = f"{self.service_name}.{method.__name__}"
        self.cloud.calls.append(Call(name, args, kwargs))
        self.cloud.raise_if_failing(name)
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class FakeService:
    service_name = ""

    def __init__(self, cloud: FakeGateway) -> None:
        self.cloud = cloud

    @property
    def gateway(self) -> FakeGateway:
        """As the real services have it: the gateway they belong to (its waiter, clock and pauses)."""
        return self.cloud


@dataclass
class _Client:
    """What the real Gateway's generic parts use of a client: the log and the pauses (never slept); and the HTTP
    for the post strategy's upload (``Gateway.upload_transport``): ``http``, one FakeHttp standing in for the
    secondary storage VM (``cloud.http``)."""

    log: Logger
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0
    http: FakeHttp = field(default_factory=FakeHttp)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def upload_transport(self) -> FakeHttp:
        return self.http.fresh()


class FakeGateway(Gateway):
    def __init__(self, log: Logger | None = None) -> None:
        from .account import FakeAccount
        from .addresses import FakeAddresses
        from .affinity import FakeAffinity
        from .catalogue import FakeCatalogue
        from .loadbalancers import FakeLoadBalancers
        from .networks import FakeNetworks
        from .snapshots import FakeSnapshots
        from .tagging import FakeTagging
        from .templates import FakeTemplates
        from .vms import FakeVms
        from .volumes import FakeVolumes

        self.stream = io.StringIO()
        super().__init__(_Client(log or Logger(stream=self.stream, request_id="cpi-123456")),  # type: ignore[arg-type]
                         timeouts=schema.parse(Timeouts, {}))  # the defaults, as actions read them from the gateway
        self.calls: list[Call] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._ids = itertools.count(1)
        # Instance attributes win over the real Gateway's cached properties.
        self.account = FakeAccount(self)  # type: ignore[misc, assignment]
        self.catalogue = FakeCatalogue(self)  # type: ignore[misc, assignment]
        self.tags = FakeTagging(self)  # type: ignore[misc, assignment]
        self.vms = FakeVms(self)  # type: ignore[misc, assignment]
        self.networks = FakeNetworks(self)  # type: ignore[misc, assignment]
        self.addresses = FakeAddresses(self)  # type: ignore[misc, assignment]
        self.load_balancers = FakeLoadBalancers(self)  # type: ignore[misc, assignment]
        self.affinity = FakeAffinity(self)  # type: ignore[misc, assignment]
        self.volumes = FakeVolumes(self)  # type: ignore[misc, assignment]
        self.snapshots = FakeSnapshots(self)  # type: ignore[misc, assignment]
        self.templates = FakeTemplates(self)  # type: ignore[misc, assignment]

    # -- arranging

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}-aaaa-bbbb-cccc-dddddddddddd"

    def fail(self, method: str, error: Exception | None = None, *, times: int | None = 1) -> None:
        """Make ``method`` ("volumes.attach") raise ``error`` (a CloudStack job failure by default) for its next
        ``times`` calls, or for every call with ``times=None``."""
        error = error or CloudStackError(method, "injected failure", kind="job", errorcode=530, jobid="job-1")
        self._failures.setdefault(method, []).append(_Failure(error, times))

    def raise_if_failing(self, method: str) -> None:
        pending = self._failures.get(method)
        if not pending:
            return
        failure = pending[0]
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                pending.pop(0)
        raise failure.error

    # -- reading

    def called(self, method: str) -> list[dict]:
        """The keyword arguments (and positional ones, as ``args``) of every call of ``method``."""
        return [{**call.kwargs, "args": call.args} for call in self.calls if call.method == method]

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    @property
    def http(self) -> FakeHttp:
        """The secondary storage VM the post strategy streams to (an upload slot's answer: ``templates.ssvm``)."""
        return self.client.http  # type: ignore[attr-defined]

    @property
    def log_text(self) -> str:
        return self.stream.getvalue()


def job_failure(command: str, text: str, code: int = 530, **extra: Any) -> CloudStackError:
    """A failed CloudStack job, as the gateway raises it."""
    return CloudStackError(command, text, kind="job", errorcode=code, jobid="job-9", **extra)


def api_error(command: str, text: str, code: int = 431) -> CloudStackError:
    """An error answer to a request, as the gateway raises it."""
    return CloudStackError(command, text, errorcode=code, http_status=code)
