"""Signing agrees with the published vectors and with an independent model of the server."""

import base64
import hashlib
import hmac

from hypothesis import given, settings, strategies as st

from cloudstack_cpi.cloudstack.signing import java_urlencode, sign, string_to_sign

DOC_KEY = "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg"
DOC_SECRET = "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ"


def test_developer_guide_vector():
    params = {"apikey": DOC_KEY, "command": "listUsers", "response": "json"}
    assert sign(params, DOC_SECRET) == "TTpdDq/7j/J58XCRHomKoQXEQds="


def test_libcloud_vectors():
    base = {"apiKey": "fnord", "response": "json"}
    assert sign({**base, "command": "listVirtualMachines"}, "abracadabra") == "z/a9Y7J52u48VpqIgiwaGUMCso0="
    deploy = {**base, "command": "deployVirtualMachine", "name": "fred", "displayname": "George",
              "serviceofferingid": "5", "templateid": "17", "zoneid": "23", "networkids": "42"}
    assert string_to_sign(deploy) == (
        "apikey=fnord&command=deployvirtualmachine&displayname=george&name=fred&networkids=42"
        "&response=json&serviceofferingid=5&templateid=17&zoneid=23"
    )
    assert sign(deploy, "abracadabra") == "gHTo7mYmadZ+zluKHzlEKb1i/QU="
    assert sign({**deploy, "displayname": "George+Ringo"}, "abracadabra") == "tAgfrreI1ZvWlWLClD3gu4+aKv4="


def test_signature_parameter_is_not_signed():
    params = {"apiKey": "k", "command": "listZones"}
    assert sign({**params, "signature": "whatever"}, "s") == sign(params, "s")


def test_value_encoding_matches_java_urlencoder():
    assert java_urlencode("a b") == "a%20b"
    assert java_urlencode("a+b") == "a%2Bb"
    assert java_urlencode("x~y") == "x%7Ey"
    assert java_urlencode("*") == "*"
    assert java_urlencode("[0]") == "%5B0%5D"
    assert java_urlencode("é") == "%C3%A9"
    assert java_urlencode("a/b:c=d&e") == "a%2Fb%3Ac%3Dd%26e"
    assert java_urlencode("._-") == "._-"


def test_names_are_raw_and_sorted_case_sensitively():
    text = string_to_sign({"tags[0].key": "k", "details[0].cpuNumber": "2", "Zed": "1", "apiKey": "a"})
    assert text == "zed=1&apikey=a&details[0].cpunumber=2&tags[0].key=k"


# -- an independent model of ApiServer.verifyRequest, written from the Java spec ----------

_JAVA_UNRESERVED = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


def _java_encode(value: str) -> str:
    out = []
    for byte in value.encode("utf-8"):
        if byte in _JAVA_UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out).replace("+", "%20")


def _server_signature(params: dict, secret: str) -> str:
    names = sorted(params, key=lambda name: name.encode("utf-16-be"))  # Java String.compareTo
    unsigned = "&".join(f"{n}={_java_encode(params[n])}" for n in names if n.lower() != "signature")
    mac = hmac.new(secret.encode(), unsigned.lower().encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ[].0123456789", min_size=1, max_size=12)
_values = st.text(
    alphabet=st.one_of(st.sampled_from(list("~*+ []=&/:%!'()@#$^{}|\\\"<>?,;.-_")), st.characters(codec="utf-8",
                       exclude_categories=("Cs",))),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_names, _values, min_size=1, max_size=8), st.text(min_size=1, max_size=40))
def test_agrees_with_independent_server_model(params, secret):
    assert sign(params, secret) == _server_signature(params, secret)
