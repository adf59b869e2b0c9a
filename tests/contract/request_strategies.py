"""Random CPI requests (hypothesis strategies) and the properties every answer must have.

Shared by the bounded, derandomized property test in ``test_bad_input.py`` and
the long randomized soak ``bench/fuzz_requests.py``.  The strategies mix
well-typed requests (so they get past the envelope checks into validation,
lookups and real handlers) with arbitrary JSON, and include what a director
never sends: NUL, lone surrogates, NaN and infinities, huge integers, odd keys,
malformed addresses.
"""

from __future__ import annotations

import json
import re

from hypothesis import strategies as st

from cloudstack_cpi import errors, rpc
from cloudstack_cpi.log import Logger

UNKNOWN = "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"
STEMCELL = "$stemcell"  # replaced by a real template id of the simulator when the request is sent
CONTEXT = {"director_uuid": "d", "request_id": "cpi-101010", "vm": {"stemcell": {"api_version": 3}}}

# Any code point, surrogates and NUL included (hypothesis leaves surrogates out unless asked).
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)
texts = st.one_of(st.text(max_size=12), any_text)
numbers = st.one_of(st.integers(-2**40, 2**40), st.integers(), st.floats(), st.floats(allow_nan=False))
addresses = st.sampled_from(["10.1.0.40", "10.1.0.1", "255.255.255.0", "255.255.0.0", "0.0.0.0", "fd00::1",
                             "ffff:ffff:ffff:ffff::", "10.1.0.0/24", "banana", "10.1.0.400", "", " ", "::"])
json_leaf = st.one_of(st.none(), st.booleans(), numbers, texts, addresses,
                      st.sampled_from([UNKNOWN, "", "small", "bosh-isolated", "zone-1", "kvm", "manual", "dynamic",
                                       "vip", "gateway", "dns"]))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(texts, inner, max_size=3)),
                           max_leaves=6)

# Keys handlers actually read, so typed requests get past the envelope checks and into validation and lookups.
PROPERTY_KEYS = ["compute_offering", "cpu", "ram", "cpu_speed", "disk", "root_disk_size", "ephemeral_disk_offering",
                 "availability_zone", "key_name", "security_groups", "affinity_group", "lbs", "routes", "name",
                 "type", "ip", "netmask", "gateway", "dns", "default", "cloud_properties", "disk_offering",
                 "hypervisor", "disk_format", "template_name", "template_id", "ephemeral_disk_size", "bosh", "tags",
                 "destination", "cidr", "undiscoverable", "public_ip", "private_port", "public_port", "algorithm",
                 "job", "index", "instance_group", "compiling", "deployment", "director"]
objects = st.dictionaries(st.one_of(st.sampled_from(PROPERTY_KEYS), texts), json_values, max_size=4)
cids = st.one_of(st.sampled_from([UNKNOWN, "vm-1", "bosh-isolated", " ", UNKNOWN + " light"]),
                 st.text(min_size=1, max_size=12), any_text)


def mostly(valid, junk):
    """Usually a valid value, sometimes (1 in 8) junk: requests get deep before one field goes wrong."""
    return st.integers(0, 7).flatmap(lambda pick: junk if pick == 7 else valid)


ips = st.sampled_from(["10.1.0.40", "10.1.0.41", "10.1.0.42", "fd00::40"])
netmasks = st.sampled_from(["255.255.255.0", "255.255.0.0", "ffff:ffff:ffff:ffff::"])
routes = st.one_of(
    st.fixed_dictionaries({"destination": mostly(st.just("10.9.0.0"), json_leaf),
                           "netmask": mostly(st.just("255.255.0.0"), json_leaf),
                           "gateway": mostly(st.just("10.1.0.254"), json_leaf)}),
    st.fixed_dictionaries({"cidr": mostly(st.sampled_from(["10.9.0.0/16", "fd00:9::/64"]), json_leaf),
                           "gateway": mostly(st.just("10.1.0.254"), json_leaf)}),
    json_values,
)
route_lists = st.one_of(st.lists(routes, max_size=2), json_leaf)


@st.composite
def network_specs(draw):
    """Mostly-plausible network specs, a field at a time gone wrong."""
    spec = {"type": draw(mostly(st.sampled_from(["manual", "dynamic", "vip"]), st.one_of(json_leaf, texts))),
            "ip": draw(mostly(ips, st.one_of(addresses, json_leaf))),
            "netmask": draw(mostly(netmasks, st.one_of(addresses, json_leaf))),
            "gateway": draw(mostly(st.just("10.1.0.1"), st.one_of(addresses, json_leaf))),
            "dns": draw(mostly(st.just(["10.1.0.2"]), st.one_of(st.lists(st.one_of(addresses, json_leaf), max_size=2),
                                                                 json_leaf))),
            "default": draw(mostly(st.just(["dns", "gateway"]), json_values)),
            "cloud_properties": draw(mostly(
                st.fixed_dictionaries({"name": mostly(st.sampled_from(["bosh-isolated", "bosh-shared"]), json_leaf)},
                                      optional={"routes": route_lists, "security_groups": json_values,
                                                "undiscoverable": json_leaf}),
                st.one_of(objects, json_leaf)))}
    drop = draw(st.sets(st.sampled_from(sorted(spec)), max_size=3))
    extra = draw(st.dictionaries(texts, json_leaf, max_size=1))
    return {**{key: value for key, value in spec.items() if key not in drop}, **extra}


vm_cloud_properties = st.fixed_dictionaries(
    {"compute_offering": mostly(st.sampled_from(["small", "medium", "custom"]), json_leaf)},
    optional={"cpu": mostly(st.integers(1, 4), json_leaf), "ram": mostly(st.sampled_from([512, 1024]), json_leaf),
              "disk": mostly(st.sampled_from([1024, 3072]), json_leaf),
              "root_disk_size": mostly(st.just(10240), json_leaf),
              "routes": st.one_of(st.dictionaries(st.one_of(st.just("default"), texts), route_lists, max_size=2),
                                  json_leaf),
              "lbs": json_values, "security_groups": json_values, "availability_zone": json_leaf,
              "affinity_group": json_leaf, "key_name": json_leaf, "ephemeral_disk_offering": json_leaf},
)


@st.composite
def create_vm_request(draw):
    """create_vm with a real stemcell and plausible arguments, some part of them wrong."""
    networks = draw(st.dictionaries(mostly(st.sampled_from(["default", "second"]), texts),
                                    mostly(network_specs(), json_values), min_size=1, max_size=2))
    arguments = [draw(mostly(st.just("agent-1"), cids)), draw(mostly(st.just(STEMCELL), cids)),
                 draw(mostly(vm_cloud_properties, objects)), networks,
                 draw(st.one_of(st.just([]), st.lists(cids, max_size=1))),
                 draw(st.one_of(st.just({}), objects, st.none()))]
    return {"method": "create_vm", "arguments": arguments, "context": CONTEXT,
            "api_version": draw(st.sampled_from([1, 2]))}


ARGUMENT_STRATEGIES = {
    rpc._cid: cids, rpc._string: cids, rpc._cid_or_null: st.one_of(st.none(), cids),
    rpc._object: objects, rpc._object_or_null: st.one_of(st.none(), objects),
    rpc._size: st.one_of(st.integers(1, 2**31), st.integers()), rpc._cid_list: st.lists(cids, max_size=2),
}


@st.composite
def typed_request(draw):
    method = draw(st.sampled_from(sorted(rpc.METHODS)))
    spec = rpc.METHODS[method]
    arguments = [draw(ARGUMENT_STRATEGIES[check]) for _, check in spec.args[: draw(
        st.integers(spec.required, len(spec.args)))]]
    if method == "create_vm" and len(arguments) >= 4:
        arguments[3] = draw(st.dictionaries(texts, st.one_of(network_specs(), objects), max_size=2))
    return {"method": method, "arguments": arguments, "context": CONTEXT,
            "api_version": draw(st.sampled_from([1, 2, 3]))}


# Odd numbers and characters in the request text itself (json.dumps writes NaN; lone surrogates as escapes).
raw_oddities = st.sampled_from([b"NaN", b"-Infinity", b"1e999", b"1" * 40, b'"\\ud800"', b'"\\u0000"',
                                b'"\\udc00\\ud800"'])


@st.composite
def raw_request(draw):
    """A typed request with one value replaced, in the JSON text, by an oddity."""
    body = json.dumps(draw(typed_request()))
    positions = [m.start() for m in re.finditer(r'(?<=[\[:,] )("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|null|true|false)',
                                                body)]
    if not positions:
        return body.encode()
    start = draw(st.sampled_from(positions))
    end = re.compile(r'("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|null|true|false)').match(body, start).end()
    return (body[:start] + draw(raw_oddities).decode() + body[end:]).encode()


untyped_request = st.one_of(
    st.fixed_dictionaries({"method": st.one_of(st.sampled_from(sorted(rpc.METHODS)), texts),
                           "arguments": st.lists(json_values, max_size=7)},
                          optional={"context": st.one_of(st.just(CONTEXT), json_values),
                                    "api_version": st.one_of(st.integers(0, 4), json_values)}),
    json_values,
)
requests_st = st.one_of(typed_request(), create_vm_request(), create_vm_request(), untyped_request, raw_request())


class NullStream:
    def write(self, _):
        return 0

    def flush(self):
        pass


def encode_request(request_body, stemcell: str = UNKNOWN) -> bytes:
    """A request body (a JSON value, NaN and lone surrogates allowed, or raw bytes) as bytes to send."""
    raw = request_body if isinstance(request_body, bytes) else json.dumps(request_body).encode()
    return raw.replace(json.dumps(STEMCELL).encode(), json.dumps(stemcell).encode())


def answer(request_body, config_path: str, stemcell: str = UNKNOWN) -> dict:
    """rpc.handle's answer to one request body, in-process."""
    return rpc.handle(encode_request(request_body, stemcell), config_path, Logger(stream=NullStream()))


def existing_stemcell(simulator) -> str:
    """The id of the simulator's ready template, for create_vm requests that get far."""
    from cloudstack_cpi.cloudstack.client import Client

    client = Client(simulator.endpoint, simulator.api_key, simulator.secret_key, log=Logger(level="error"))
    try:
        return client.list("listTemplates", templatefilter="executable", name="bosh-stemcell-existing")[0]["id"]
    finally:
        client.close()


_SURROGATE = re.compile("[\ud800-\udfff]")


class BadAnswer(AssertionError):
    """An answer that breaks the contract; ``kind`` groups failures of one cause."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def check_answer(response: dict) -> None:
    """What every answer must be, whatever the request: one of the ten errors or a result, as strict JSON."""
    if set(response) != {"result", "error", "log"}:
        raise BadAnswer("wrong keys", repr(sorted(response)))
    try:
        text = rpc.encode(response).decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadAnswer("answer not ASCII", str(exc)) from None

    def refuse(constant):
        raise BadAnswer("answer not strict JSON", f"holds {constant}")

    parsed = json.loads(text, parse_constant=refuse)
    if _SURROGATE.search(json.dumps(parsed, ensure_ascii=False)):
        raise BadAnswer("answer holds a lone surrogate")
    error = parsed["error"]
    if error is None:
        return
    if error["type"] not in errors.ALL_TYPES:
        raise BadAnswer("unknown error type", error["type"])
    if not isinstance(error["message"], str) or not isinstance(error["ok_to_retry"], bool):
        raise BadAnswer("malformed error", repr(error)[:200])
    message = error["message"]
    if message.startswith("Unexpected error"):
        # "Unexpected error in <method>: <Exception>: <text>": one kind per method and exception type.
        raise BadAnswer("crash " + " ".join(message.split(":")[:2]), message)
    if "\n" in message:
        raise BadAnswer("message of several lines", message[:200])
    if len(message) > rpc.MAX_MESSAGE_CHARS + 40:
        raise BadAnswer("message too long", f"{len(message)} characters")
