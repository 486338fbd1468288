"""routes/payload: form bodies with repeated fields, parsed in linear time (a hostile body repeating one key
used to cost the square of its length, blocking every request meanwhile)."""

from __future__ import annotations

from gateway.model import Payload
from gateway.routes.payload import parse_payload

FORM = "application/x-www-form-urlencoded"


def test_repeated_fields_keep_their_values_in_order_and_fields_keep_their_first_position() -> None:
    body = b"a=1&b=2&a=3&c=&b=4&a=5"
    assert parse_payload(FORM, body) == Payload("form", {"a": ["1", "3", "5"], "b": ["2", "4"], "c": ""})
    assert list(parse_payload(FORM, body).data) == ["a", "b", "c"]


def test_a_body_repeating_one_key_a_million_times_is_parsed_whole() -> None:
    # ~4 MiB: quadratic appends took hours here; linear ones take well under a second.
    body = b"&".join([b"k=v"] * 1_000_000)
    payload = parse_payload(FORM, body)
    assert payload.kind == "form" and len(payload.data["k"]) == 1_000_000


def test_a_form_of_many_distinct_keys_and_one_repeated_key_keeps_both() -> None:
    body = b"&".join([b"k%d=%d" % (n, n) for n in range(50_000)] + [b"x=1", b"x=2"])
    data = parse_payload(FORM, body).data
    assert (len(data), data["k49999"], data["x"]) == (50_001, "49999", ["1", "2"])
