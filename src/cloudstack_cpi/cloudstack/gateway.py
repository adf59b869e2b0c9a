"""The typed gateway to CloudStack: one service per kind of resource, one method per operation the CPI uses.

Actions find, act and record through it; they never name a command or read a
raw answer.  Each operation owns what the caller should not have to know:

- its timeout (from ``cloudstack.timeout``) and the text a timeout names;
- its "already gone" rule: ``get`` answers None for a resource that does not
  exist or is being removed, and a delete of what is gone is done;
- whether it is safe to repeat (the client's ``SAFE_TO_REPEAT``: reads are
  retried, mutations sent once);
- how its result is recovered after a lost answer: a create carries a unique
  name and is looked up by it (``create_recoverable``); a command on one
  resource is recovered from its job (``Client.pending_job``).

Services are built on first use, so a call pays only for the modules it needs
(``has_vm`` loads the VM service and nothing else).  The one fake for unit
tests is ``tests/unit/fake_cloud/`` (kept equal to this by ``tests/unit/test_fake_cloud.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import CloudStackError

if TYPE_CHECKING:
    from ..config import Timeouts
    from .account import Account
    from .addresses import Addresses
    from .affinity import Affinity
    from .catalogue import Catalogue
    from .client import Client
    from .loadbalancers import LoadBalancers
    from .networks import Networks
    from .snapshots import Snapshots
    from .tagging import Tagging
    from .templates import Templates
    from .transport import HttpTransport
    from .vms import Vms
    from .volumes import Volumes

T = TypeVar("T")
M = TypeVar("M")

# On what a call creates, from its first tags on, until just before the call answers (``Tagging.confirm``): a
# resource that still carries it was never handed to the caller.  A process killed with SIGKILL cleans up nothing;
# what it left is found by this tag (``unconfirmed`` of the services) once it is older than any call can take.
UNCONFIRMED_TAG = "cpi_unconfirmed"
UNCONFIRMED_VALUE = "true"

DISCARD_ATTEMPTS = 4   # tries per half-created resource
DISCARD_PAUSE = 0.5    # seconds, times the attempt number, between them


class Gateway:
    """CloudStack for one CPI call: the client (transport, signing, jobs) plus the per-resource services."""

    def __init__(self, client: Client, timeouts: Timeouts) -> None:
        self.client = client
        self.timeouts = timeouts

    @property
    def log(self) -> Any:
        return self.client.log

    @cached_property
    def vms(self) -> Vms:
        from .vms import Vms

        return Vms(self)

    @cached_property
    def networks(self) -> Networks:
        from .networks import Networks

        return Networks(self)

    @cached_property
    def addresses(self) -> Addresses:
        from .addresses import Addresses

        return Addresses(self)

    @cached_property
    def load_balancers(self) -> LoadBalancers:
        from .loadbalancers import LoadBalancers

        return LoadBalancers(self)

    @cached_property
    def affinity(self) -> Affinity:
        from .affinity import Affinity

        return Affinity(self)

    @cached_property
    def volumes(self) -> Volumes:
        from .volumes import Volumes

        return Volumes(self)

    @cached_property
    def snapshots(self) -> Snapshots:
        from .snapshots import Snapshots

        return Snapshots(self)

    @cached_property
    def templates(self) -> Templates:
        from .templates import Templates

        return Templates(self)

    @cached_property
    def catalogue(self) -> Catalogue:
        from .catalogue import Catalogue

        return Catalogue(self)

    @cached_property
    def tags(self) -> Tagging:
        from .tagging import Tagging

        return Tagging(self)

    @cached_property
    def account(self) -> Account:
        from .account import Account

        return Account(self)

    # -- the one waiter ---------------------------------------------------------------------------------------

    def start(self, command: str, *, timeout: float, what: str, parse: Callable[[dict], T | None], **params: Any
              ) -> Pending[T]:
        """Send an async command without waiting for its job: the pending result, whose ``resource_id`` is known
        at once when the server answers it with the job id (async creates do: ApiServer.queueCommand)."""
        answer = self.client.call(command, **params)
        return Pending(self.client, command, answer, timeout, what, parse)

    def run(self, command: str, *, timeout: float, what: str, ours: Callable[[dict], bool] | None = None,
            **params: Any) -> dict:
        """Send an async command and wait for its job; a lost answer is recovered from the job (``run_job``; ``ours``
        tells an earlier call's job of the same command on the same resource from this call's)."""
        return self.client.run_job(command, timeout=timeout, what=what, ours=ours, **params)

    def poll_until(self, read: Callable[[], T], settled: Callable[[T], bool], *, timeout: float,
                   intervals: Iterable[float] | None = None, read_first: bool = True) -> tuple[T, bool]:
        """The one waiter for resource states (jobs have theirs in the client, ``wait_for_job``): ``read`` until
        ``settled`` says so or ``timeout`` seconds have passed; the last value read, and whether it settled.
        Pauses follow ``intervals`` (default: the client's job polling, soon at first, then a fraction of the time
        waited), never past the timeout; ``read_first=False`` pauses before the first read."""
        started = self.clock()
        pauses = iter(intervals) if intervals is not None else None
        if not read_first:
            self.sleep(self._pause(pauses, 0.0, timeout))
        while True:
            value = read()
            waited = self.clock() - started
            if settled(value):
                return value, True
            if waited >= timeout:
                return value, False
            self.sleep(self._pause(pauses, waited, timeout))

    def _pause(self, pauses: Iterator[float] | None, waited: float, timeout: float) -> float:
        planned = next(pauses) if pauses is not None else self.client.poll.interval(waited)
        return max(0.0, min(planned, timeout - waited))

    def delete(self, command: str, *, timeout: float, what: str, gone: Callable[[], bool], label: str,
               **params: Any) -> bool:
        """The idempotent delete every service uses: run ``command`` (sync or async; a lost answer is recovered
        from its job); when it fails and ``gone`` says the resource is gone now (removed meanwhile, or by this very
        command before its answer was lost), that is done too.  False when it was gone rather than deleted here."""
        try:
            self.run(command, timeout=timeout, what=what, **params)
        except CloudStackError as err:
            if gone():
                self.log.info(f"{label} went meanwhile ({err.errortext})")
                return False
            raise
        return True

    def discard(self, label: str, remove: Callable[[], object], gone: Callable[[], bool] | None = None, *,
                refusals: tuple[type[Exception], ...] = ()) -> bool:
        """Remove what a failed call half-created: tried a few times on transient failures; a removal whose answer
        was lost counts once the resource is seen gone.  ``refusals`` are further exception types that end the
        tries (the caller's own errors).  Never raises them: the caller is reporting the error that made this
        necessary.  True when it is gone."""
        log = self.log
        stops: tuple[type[Exception], ...] = (CloudStackError, *refusals)
        for attempt in range(1, DISCARD_ATTEMPTS + 1):
            try:
                remove()
                log.info(f"Cleaned up {label}")
                return True
            except stops as err:
                transient = isinstance(err, CloudStackError) and err.is_transient
                if transient and gone is not None and _looks_gone(gone):
                    log.info(f"Cleaned up {label} ({err})")
                    return True
                if transient and attempt < DISCARD_ATTEMPTS:
                    log.warning(f"Cleaning up {label} failed ({err}); trying again")
                    self.sleep(DISCARD_PAUSE * attempt)
                    continue
                log.error(f"Could not clean up {label} ({err}); delete it by hand")
                return False
        return False

    def upload_transport(self) -> HttpTransport:
        """HTTP for sending bytes to CloudStack outside the API (an upload slot), with the API's trust."""
        return self.client.upload_transport()

    def sleep(self, seconds: float) -> None:
        self.client.sleep(seconds)

    def clock(self) -> float:
        return self.client.clock()

    def create_recoverable(self, creation: Creation[T], *, meanwhile: Callable[[], object] | None = None,
                           with_made: Callable[[T], object] | None = None) -> T:
        """Create one named resource and tag it, so that nothing is left behind whatever happens.

        The tags go on beside the create as soon as the new id is known (two jobs waited for side by side, not one
        after the other); ``meanwhile`` runs then too, before the waiting (work of the caller's that need not come
        before the create: it must not raise for anything but an interruption).  ``with_made`` gets the new resource
        as soon as it is answered and runs before its tags are waited for (a template's upload: the tags are on their
        way, and a process killed meanwhile leaves the resource findable all the same); when it raises, the resource
        is discarded as after any failure.  After a lost answer or a job timeout the resource is found by its unique
        name; when the create or the tagging fails, or the process is interrupted (SIGTERM, SIGINT), what was made
        is discarded before the error goes on.  A tagging failure is raised with ``tagging <kind> '<id>'`` in
        front.

        With ``creation.confirm`` the tags carry ``UNCONFIRMED_TAG``, which goes again once the tags are on: the
        resource is handed over only then, and a process killed before that leaves it findable.  Without it the
        caller confirms when its call is about to answer (a template is not done before it is ready).
        """
        made: set[str] = set()
        step = ""
        try:
            pending = self.start(creation.command, timeout=creation.timeout, what=creation.what,
                                 parse=creation.parse, **creation.params)
            if pending.resource_id:
                made.add(pending.resource_id)
            tags = creation.initial_tags()
            tagging = self.tags.start(creation.resource_type, pending.resource_id, tags) \
                if pending.resource_id else None
            if meanwhile is not None:
                meanwhile()
            created = pending.wait(recover=partial(self._only_named, creation))
            made.add(creation.id_of(created))
            if tagging is None:
                tagging = self.tags.start(creation.resource_type, creation.id_of(created), tags)
            if with_made is not None:
                with_made(created)
            step = f"tagging {creation.kind} '{creation.id_of(created)}': "
            tagging.wait()
            if creation.confirm:
                self.tags.confirm(creation.resource_type, creation.id_of(created))
            return created
        except CloudStackError as err:
            leftovers = made | ({err.resource_id} if err.resource_id else set())
            if err.outcome_unknown or err.kind == "timeout" or not leftovers:
                leftovers |= self._named_ids(creation)
            for resource_id in sorted(leftovers):
                self._discard_made(creation, resource_id)
            if step:
                err.add_context(step)
            raise
        except BaseException:  # interrupted, or with_made failed: the resource exists, and the director never learns it
            for resource_id in sorted(made | self._named_ids(creation)):
                self._discard_made(creation, resource_id)
            raise

    def start_named(self, creation: Creation[T], *, made: Callable[[str], object]) -> Pending[T]:
        """Start the create ``creation`` describes without waiting for its job, for a caller that does more beside it
        and removes what it made itself when it fails (``create_recoverable`` is the create that waits, tags and
        cleans up on its own).

        ``made`` learns the id of every resource the create may have made as soon as it is known: the one its answer
        names; after a lost answer, or an interruption (SIGTERM, SIGINT) while asking, every one with the unique name.
        Waiting answers the job's resource or, when the job's result names none, the one resource with the name.
        """

        def report_named() -> None:
            for resource_id in sorted(self._named_ids(creation)):
                made(resource_id)

        def parse(result: dict) -> T:
            parsed = creation.parse(result)
            return parsed if parsed is not None else self._only_named(creation)

        try:
            pending = self.start(creation.command, timeout=creation.timeout, what=creation.what, parse=parse,
                                 **creation.params)
        except CloudStackError as err:
            if err.outcome_unknown:  # the answer was lost: it may have been made anyway
                report_named()
            raise
        except BaseException:  # interrupted while asking: it may have been made anyway
            report_named()
            raise
        if pending.resource_id:
            made(pending.resource_id)
        return pending

    def _discard_made(self, creation: Creation[Any], resource_id: str) -> None:
        self.discard(f"half-created {creation.kind} '{resource_id}'", partial(creation.remove, resource_id),
                     partial(creation.gone, resource_id))

    def _named_ids(self, creation: Creation[Any]) -> set[str]:
        try:
            return {creation.id_of(item) for item in creation.find_named()}
        except CloudStackError as err:
            self.log.warning(f"Looking for {creation.kind} {creation.name} after a failed create: {err}")
            return set()

    def _only_named(self, creation: Creation[T]) -> T:
        found = list(creation.find_named())
        if len(found) != 1:
            raise CloudStackError(creation.command, f"answered without a {creation.kind} and {len(found)} are "
                                                    f"named {creation.name}", kind="transport")
        return found[0]


class Service:
    """What every per-resource service has: its gateway, the client under it and the configured timeouts; and the
    two readings they share."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.client = gateway.client
        self.timeouts = gateway.timeouts

    def _one(self, command: str, parse: Callable[[dict], M], resource_id: str, **params: Any) -> M | None:
        """The resource with this id as a model; None when CloudStack does not know the id (431) or the model says
        it is ``gone`` (being destroyed or expunged)."""
        row = self.client.find(command, id=resource_id, **params)
        found = parse(row) if row else None
        return None if found is None or getattr(found, "gone", False) else found

    def _tagged(self, command: str, parse: Callable[[dict], M], tags: Mapping[str, str], **params: Any) -> list[M]:
        """Every resource carrying all of ``tags``, not gone, the tags checked here again: a server that ignored
        the tag filter must not make a caller act on other resources."""
        rows = self.client.list_all(command, tags=dict(tags), listall=True, **params)
        found = [parse(row) for row in rows]
        return [item for item in found if not getattr(item, "gone", False)
                and all(item.tags.get(key) == value for key, value in tags.items())]  # type: ignore[attr-defined]

    def _unconfirmed(self, command: str, parse: Callable[[dict], M], **params: Any) -> list[M]:
        """Every resource still carrying ``UNCONFIRMED_TAG`` (never handed over: made by a call that did not
        answer, or that is still running), not gone, the mark checked here again (``_tagged``)."""
        return self._tagged(command, parse, {UNCONFIRMED_TAG: UNCONFIRMED_VALUE}, **params)


@dataclass(frozen=True)
class Creation(Generic[T]):
    """What ``create_recoverable`` needs to know about one create: how to send it, find it by its unique name,
    tag it, and remove it."""

    kind: str                                  # "volume", "snapshot": for messages
    name: str                                  # unique: the handle after a lost answer
    command: str
    params: dict
    timeout: float
    what: str
    parse: Callable[[dict], T | None]          # the job result to the model (None: it names none)
    find_named: Callable[[], Iterable[T]]      # every resource with exactly this name
    remove: Callable[[str], object]
    gone: Callable[[str], bool]
    resource_type: str                         # createTags' resourcetype
    tags: dict[str, str]
    id_of: Callable[[T], str] = lambda item: item.id  # type: ignore[attr-defined]
    confirm: bool = False                      # confirmed by create_recoverable itself once tagged
    unconfirmed: bool = True                   # carries UNCONFIRMED_TAG until confirmed

    def initial_tags(self) -> dict[str, str]:
        """The tags that go on beside the create: the caller's, and the mark of a resource not yet handed over."""
        return {**self.tags, UNCONFIRMED_TAG: UNCONFIRMED_VALUE} if self.unconfirmed else dict(self.tags)


class Pending(Generic[T]):
    """An async command sent and not yet waited for."""

    def __init__(self, client: Client, command: str, answer: dict, timeout: float, what: str,
                 parse: Callable[[dict], T | None]) -> None:
        self.client = client
        self.command = command
        self.answer = answer
        self.timeout = timeout
        self.what = what
        self.parse = parse
        self.sent_at = client.clock()  # the job's polls and timeout count from here, whenever it is waited for
        self._result: T | None = None
        self._done = False

    @property
    def resource_id(self) -> str | None:
        """The new resource's id when the server named it with the job (async creates do)."""
        value = self.answer.get("id")
        return str(value) if value else None

    def wait(self, recover: Callable[[], T] | None = None) -> T:
        """The job's result as a model (waited for once).  ``recover`` finds the result when the job's answer
        names none (``parse`` gives None: a server that answered the create with ``{}``)."""
        if not self._done:
            result = self.client.finish_job(self.answer, command=self.command, timeout=self.timeout, what=self.what,
                                            since=self.sent_at)
            parsed = self.parse(result)
            if parsed is None and recover is not None:
                parsed = recover()
            self._result, self._done = parsed, True
        return self._result  # type: ignore[return-value]


def no_result(result: dict) -> None:
    """The ``parse`` of a command whose job answers nothing worth keeping (createTags, copyTemplate)."""
    return None


def _looks_gone(gone: Callable[[], bool]) -> bool:
    try:
        return gone()
    except CloudStackError:
        return False
