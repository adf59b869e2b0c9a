"""Signature verification as ApiServer.verifyRequest does it (GET and POST)."""
from datetime import UTC, datetime, timedelta

import pytest
import requests

from cloudstack_simulator import signing

from .helpers import sign


def test_documentation_vector():
    params = {"apikey": "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg",
              "command": "listUsers", "response": "json"}
    secret = "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ"
    assert signing.compute_signature(params, secret) == "TTpdDq/7j/J58XCRHomKoQXEQds="


@pytest.mark.parametrize("extra,expected", [
    ({"command": "listVirtualMachines"}, "z/a9Y7J52u48VpqIgiwaGUMCso0="),
    ({"command": "deployVirtualMachine", "name": "fred", "displayname": "George", "serviceofferingid": "5",
      "templateid": "17", "zoneid": "23", "networkids": "42"}, "gHTo7mYmadZ+zluKHzlEKb1i/QU="),
    ({"command": "deployVirtualMachine", "name": "fred", "displayname": "George+Ringo", "serviceofferingid": "5",
      "templateid": "17", "zoneid": "23", "networkids": "42"}, "tAgfrreI1ZvWlWLClD3gu4+aKv4="),
])
def test_libcloud_vectors(extra, expected):
    params = dict(extra, apiKey="fnord", response="json")
    assert signing.compute_signature(params, "abracadabra") == expected


def test_java_encoding_rules():
    assert signing.java_urlencode("a b*c~d/e:f+g") == "a%20b*c%7Ed%2Fe%3Af%2Bg"
    assert signing.java_urlencode("é") == "%C3%A9"


@pytest.mark.parametrize("text", ["2099-01-01T12:00:00+0000", "2099-01-01T12:00:00Z", "2099-01-01T12:00:00+00:00",
                                  "2099-01-01T12:00:00.123Z", "2099-01-01T12:00:00.123456+0000",
                                  "2099-01-01T12:00:00Z+0000", "2099-01-01T14:00:00+0200"])
def test_expires_formats_accepted(api, text):
    p = api.signed("listZones", {}, expires=text)
    r = requests.get(api.endpoint, params=p)
    assert r.status_code == 200, r.text


def test_expires_unparseable_rejected(api):
    p = api.signed("listZones", {}, expires="tomorrow")
    assert requests.get(api.endpoint, params=p).status_code == 401


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_good_signature_get_and_post(api, method):
    p = api.signed("listZones", {"name": "zone-1", "keyword": "a b~c*"})
    r = requests.get(api.endpoint, params=p) if method == "GET" else requests.post(api.endpoint, data=p)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_signature(api, method):
    p = api.signed("listZones", {}, secret="wrong")
    r = requests.get(api.endpoint, params=p) if method == "GET" else requests.post(api.endpoint, data=p)
    assert r.status_code == 401
    assert r.json() == {"listzonesresponse": {"uuidList": [], "errorcode": 401,
                                              "errortext": "unable to verify user credentials and/or request signature"}}


def test_unknown_api_key(api):
    p = api.signed("listZones", {}, key="nobody")
    assert requests.get(api.endpoint, params=p).status_code == 401


def test_expired_signature(api):
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    r = requests.get(api.endpoint, params=api.signed("listZones", {}, expires=past))
    assert r.status_code == 401


def test_expires_ignored_without_version3(api):
    p = {"command": "listZones", "response": "json", "apiKey": api.key, "expires": "2000-01-01T00:00:00+0000"}
    p["signature"] = sign(p, api.secret)
    assert requests.get(api.endpoint, params=p).status_code == 200


def test_unknown_command_is_401_errorresponse(api):
    r = requests.get(api.endpoint, params=api.signed("fooBar", {}))
    assert r.status_code == 401
    assert list(r.json()) == ["errorresponse"]


def test_missing_signature(api):
    r = requests.get(api.endpoint, params={"command": "listZones", "response": "json", "apiKey": api.key})
    assert r.status_code == 401


def test_signature_over_tampered_value(api):
    p = api.signed("listZones", {"name": "zone-1"})
    p["name"] = "zone-2"
    assert requests.get(api.endpoint, params=p).status_code == 401


def test_repeated_query_key_last_wins(api):
    p = api.signed("listZones", {"name": "zone-2"})
    # the signed value is the LAST occurrence of the repeated key
    query = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in p.items()) + ""
    r = requests.get(api.endpoint + "?name=zone-1&" + query)
    assert r.status_code == 200
    assert [z["name"] for z in r.json()["listzonesresponse"]["zone"]] == ["zone-2"]


def test_camel_and_map_names_signed_raw(api):
    z = api.zone("zone-1")
    # names with brackets are signed raw; values keep case
    r = api.raw("listVirtualMachines", **{"tags[0].key": "Owner", "tags[0].value": "x~y", "zoneid": z["id"]})
    assert r.status_code == 200, r.text
