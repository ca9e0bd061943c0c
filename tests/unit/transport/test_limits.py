"""The decoder of small documents (msgspec) against msgpack: same values, same refusals."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import transport.limits as limits
from transport.errors import DecodeError
from transport.limits import DEFAULT_LIMITS, unpacker

pytestmark = pytest.mark.skipif(limits.msgspec is None, reason="msgspec is not installed")


def hook(code: int, data: bytes) -> Any:
    """An extension hook like the codec's: it sees bytes, it may refuse."""
    assert type(data) is bytes
    if code == 9:
        raise DecodeError(None, "extension 9 refused")
    if code == 8:
        raise ValueError("not a date")  # as a datetime extension that does not parse
    return ("ext", code, data)


def msgpack_only() -> Callable[[bytes], Any]:
    """The same unpacker as it is without msgspec."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limits, "msgspec", None)
        return unpacker(DEFAULT_LIMITS, hook)


QUICK, PLAIN = unpacker(DEFAULT_LIMITS, hook), msgpack_only()


def verdict(decode: Callable[[bytes], Any], data: bytes) -> tuple[str, str]:
    # repr tells list from tuple, bytes from str, and compares NaNs by their spelling.
    try:
        return "value", repr(decode(data))
    except DecodeError as exc:
        return "refused", exc.reason


keys = (
    st.text(max_size=4)
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=4)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 10), st.binary(max_size=6)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(values, st.integers(0, 3))
def test_documents_decode_alike_whole_or_cut(value: Any, cut: int) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    data = data[: len(data) - cut] if cut < len(data) else data  # truncated ones are refused
    assert verdict(QUICK, data) == verdict(PLAIN, data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=48))
def test_arbitrary_bytes_decode_alike(data: bytes) -> None:
    quick, plain = verdict(QUICK, data), verdict(PLAIN, data)
    if plain[0] == "refused" and "unhashable type: 'list'" in plain[1]:
        return  # an array as a map key: the one documented difference
    assert quick == plain


def test_a_timestamp_is_decoded_by_msgpack() -> None:
    data = msgpack.packb([1, msgpack.Timestamp(1, 0)])
    assert QUICK(data) == [1, msgpack.Timestamp(1, 0)]


def test_an_array_as_a_map_key_is_the_one_difference() -> None:
    data = b"\x81\x91\x01\x02"  # {[1]: 2}
    assert QUICK(data) == {(1,): 2}
    with pytest.raises(DecodeError, match="unhashable"):
        PLAIN(data)


def test_limits_hold_at_the_largest_quick_document() -> None:
    cap = DEFAULT_LIMITS.max_elements(DEFAULT_LIMITS.scan_above)
    nils = cap - 3  # array 16 header (3 bytes) and its nils fill `cap` bytes exactly
    data = b"\xdc" + nils.to_bytes(2, "big") + b"\xc0" * nils
    assert len(data) == cap
    assert unpacker()(data) == [None] * nils
    over = b"\xdc" + (cap + 1).to_bytes(2, "big") + b"\xc0" * (cap + 1)
    with pytest.raises(DecodeError, match="exceeds max_array_len"):
        unpacker()(over)


def test_nan_survives_both_ways() -> None:
    assert math.isnan(unpacker()(msgpack.packb(float("nan"))))


NAMES = ("seq", "text", "extra")
FIELDS = limits.fields_decoder(NAMES, DEFAULT_LIMITS, hook)
maps = st.dictionaries(st.sampled_from([*NAMES, "other"]) | keys, values, max_size=5)


@settings(max_examples=400, deadline=None)
@given(maps)
def test_fields_decoder_gives_the_map_of_exactly_its_names_or_none(value: dict[Any, Any]) -> None:
    assert FIELDS is not None
    data = msgpack.packb(value, use_bin_type=True)
    try:
        got = FIELDS(data)
    except DecodeError as exc:  # raised by the hook, as `unpack` would raise it
        assert verdict(PLAIN, data) == ("refused", exc.reason)
        return
    plain = verdict(PLAIN, data)
    if got is not None:
        assert tuple(got) == NAMES  # in the order of the names
        assert plain[0] == "value"
        assert sorted(map(repr, got.items())) == sorted(map(repr, PLAIN(data).items()))
    elif plain[0] == "value" and set(value) == set(NAMES) and all(type(k) is str for k in value):
        assert 0xFF in data or len(data) > 1280  # left to msgpack, as unpacker does


def test_fields_decoder_takes_the_common_body_and_leaves_the_rest() -> None:
    assert FIELDS is not None
    body = {"seq": 1, "text": "x", "extra": [1, {"a": b"b"}]}
    assert FIELDS(msgpack.packb(body)) == body
    assert FIELDS(msgpack.packb({"seq": 1, "text": "x"})) is None  # a name missing
    assert FIELDS(msgpack.packb({**body, "other": 1})) is None  # one too many
    assert FIELDS(msgpack.packb([1, "x", None])) is None  # not a map
    assert FIELDS(msgpack.packb({**body, "seq": -1})) is None  # a 0xff byte: msgpack's
    assert FIELDS(b"\x83\xa3seq") is None  # truncated
    with pytest.raises(DecodeError, match="extension 9 refused"):
        FIELDS(msgpack.packb({**body, "extra": msgpack.ExtType(9, b"")}))
    with pytest.raises(DecodeError, match="not a date"):
        FIELDS(msgpack.packb({**body, "extra": msgpack.ExtType(8, b"")}))
    assert limits.fields_decoder(("__dict__",)) is None  # a name no struct can have


@dataclasses.dataclass
class Plain:
    seq: int
    at: float
    text: str
    flag: bool
    blob: bytes | None


FALLBACK = object()
PLAIN_QUICK = limits.quick_decoder(Plain)
assert PLAIN_QUICK is not None
INSTANCE = limits.instance_decoder(PLAIN_QUICK, lambda data: FALLBACK)
plain_maps = st.dictionaries(
    st.sampled_from(["seq", "at", "text", "flag", "blob", "other"]) | keys, values, max_size=6
)


@settings(max_examples=400, deadline=None)
@given(plain_maps | st.fixed_dictionaries(
    {"seq": st.integers(-(2**63), 2**64 - 1), "at": st.floats() | st.integers(-5, 5),
     "text": st.text(max_size=8), "flag": st.booleans(), "blob": st.binary(max_size=4) | st.none()}
))  # fmt: skip
def test_instance_decoder_builds_what_the_general_way_builds_or_hands_over(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    got = INSTANCE(data)
    if got is FALLBACK:
        return
    fields = PLAIN(data)  # what the general way decodes and builds the instance from
    assert type(fields) is dict and fields.keys() == {f.name for f in dataclasses.fields(Plain)}
    assert type(got) is Plain and type(fields["flag"]) is bool and type(fields["seq"]) is int
    if type(fields["at"]) is int:  # a float field takes an int, as a float
        assert type(got.at) is float and got.at == fields["at"]
        fields["at"] = got.at
    assert repr(got) == repr(Plain(**fields))


def test_instance_decoder_hands_over_what_it_does_not_take() -> None:
    body = {"seq": 1, "at": 2.5, "text": "x", "flag": True, "blob": None}
    assert INSTANCE(msgpack.packb(body)) == Plain(**body)
    for other in (
        {**body, "other": 1},  # msgspec would ignore an unknown name
        {k: v for k, v in body.items() if k != "blob"},
        {**body, "seq": True},  # a bool is not an int here
        {**body, "text": msgpack.ExtType(1, b"")},
        {**body, "at": msgpack.Timestamp(1, 0)},
        [1, 2.5, "x", True, None],
    ):
        assert INSTANCE(msgpack.packb(other)) is FALLBACK, other


@dataclasses.dataclass
class WithDefault:
    seq: int
    text: str = ""


@dataclasses.dataclass
class Nested:
    seq: int
    inner: Plain


def test_quick_decoder_is_only_for_required_plain_fields() -> None:
    assert limits.quick_decoder(WithDefault) is None
    assert limits.quick_decoder(Nested) is None
    assert limits.quick_decoder(dict) is None
