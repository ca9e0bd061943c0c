from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.codec import MAX_NESTING, PLAIN_TAG, Codec, TypeRegistry
from transport.errors import DecodeError, EncodeError, TagConflictError, UnknownTypeError


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class LegacyMode(str, enum.Enum):  # noqa: UP042 - the pre-3.11 spelling users still write
    SLOW = "slow"


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color
    origin: Point | None = None
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class Task:
    task_id: str
    name: str
    duration: float = 1.0
    subtask_ids: set[str] = dataclasses.field(default_factory=set)
    parent_id: str | None = None


@dataclasses.dataclass(kw_only=True)
class CustomTask(Task):
    task_type: str
    parameters: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    key: tuple[int, str]
    when: dt.datetime


@dataclasses.dataclass
class WithDerived:
    a: int
    double: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.double = self.a * 2


@dataclasses.dataclass
class Validated:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@dataclasses.dataclass
class Node:
    child: Node | None = None


def roundtrip(codec: Codec, value: Any) -> Any:
    tag, body = codec.encode(value)
    return codec.decode(tag, body)


@pytest.fixture
def codec() -> Codec:
    return Codec(TypeRegistry())


PLAIN_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    float("inf"),
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    [1, "a", None],
    {"a": 1, "b": [1, 2]},
    {1: "int key", 2.5: "float key", None: "none key"},
    (1, 2, "three"),
    (),
    {1, 2, 3},
    frozenset({"a", "b"}),
    {(1, 2): "tuple key"},
    [(1, {2, 3}), [(), frozenset()]],
    dt.datetime(2024, 7, 21, 9, 30, 15, 123456),
    dt.datetime(2024, 7, 21, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.date(2024, 7, 21),
    Color.RED,
    Level.HIGH,
    Mode.FAST,
    LegacyMode.SLOW,
    [Color.GREEN, Level.LOW],
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: f"{type(v).__name__}-{len(repr(v))}")
def test_plain_values_round_trip_with_their_types(codec: Codec, value: Any) -> None:
    tag, _ = codec.encode(value)
    assert tag == PLAIN_TAG
    result = roundtrip(codec, value)
    assert result == value
    assert type(result) is type(value)


def test_nan_round_trips(codec: Codec) -> None:
    result = roundtrip(codec, float("nan"))
    assert result != result


def test_nested_dataclasses_enums_and_containers(codec: Codec) -> None:
    shape = Shape("tri", [Point(0, 0), Point(1, 0)], Color.GREEN, Point(5, 5), {"k": (1, 2)})
    result = roundtrip(codec, shape)
    assert result == shape
    assert type(result.points[0]) is Point
    assert result.color is Color.GREEN
    assert result.labels["k"] == (1, 2)


def test_kw_only_dataclass_and_subclass(codec: Codec) -> None:
    task = CustomTask(
        task_id="t1", name="n", task_type="resize", parameters={"w": 10}, subtask_ids={"a"}
    )
    result = roundtrip(codec, task)
    assert type(result) is CustomTask
    assert result == task
    base = roundtrip(codec, Task(task_id="t2", name="m"))
    assert type(base) is Task


def test_frozen_slots_dataclass_with_tuple_and_datetime(codec: Codec) -> None:
    value = Frozen((1, "a"), dt.datetime(2025, 1, 2, 3, 4, 5))
    result = roundtrip(codec, value)
    assert result == value
    assert isinstance(result.key, tuple)


def test_init_false_fields_are_rebuilt_by_the_receiver(codec: Codec) -> None:
    result = roundtrip(codec, WithDerived(4))
    assert result.double == 8


def test_subclasses_of_native_containers_travel_as_the_native_type(codec: Codec) -> None:
    class MyDict(dict[str, int]):
        pass

    assert roundtrip(codec, MyDict(a=1)) == {"a": 1}


def test_default_tag_is_the_qualname_so_main_and_import_agree() -> None:
    registry = TypeRegistry()
    assert registry.register(Point) == "Point"
    assert registry.register(Shape) == "Shape"
    # Shape's field types were registered with it.
    assert {"Point", "Color"} <= set(registry.tags())


def test_explicit_tag_and_conflicts() -> None:
    registry = TypeRegistry()
    assert registry.register(Point, tag="geo.Point") == "geo.Point"
    assert registry.tag_of(Point) == "geo.Point"

    @dataclasses.dataclass
    class Other:
        z: int

    with pytest.raises(TagConflictError) as info:
        registry.register(Other, tag="geo.Point")
    assert info.value.tag == "geo.Point"
    assert "explicit tag" in str(info.value)
    with pytest.raises(TypeError):
        registry.register(int)


def test_same_tag_in_two_processes_decodes_across_registries() -> None:
    sender, receiver = Codec(TypeRegistry()), Codec(TypeRegistry())
    receiver.registry.register(Point)
    tag, body = sender.encode(Point(1, 2))
    assert receiver.decode(tag, body) == Point(1, 2)


def test_receiver_builds_only_registered_types() -> None:
    sender, receiver = Codec(TypeRegistry()), Codec(TypeRegistry())
    tag, body = sender.encode(Point(1, 2))
    with pytest.raises(UnknownTypeError) as info:
        receiver.decode(tag, body)
    assert info.value.tag == "Point"
    assert "'Point'" in str(info.value)


def test_unknown_nested_tag_is_named(codec: Codec) -> None:
    other = Codec(TypeRegistry())
    tag, body = other.encode([Point(1, 2)])
    with pytest.raises(UnknownTypeError, match="Point"):
        codec.decode(tag, body)


def test_wrong_field_names_are_rejected_with_the_tag_and_fields(codec: Codec) -> None:
    codec.registry.register(Point)
    body = msgpack.packb({"x": 1, "z": 2})
    with pytest.raises(DecodeError) as info:
        codec.decode("Point", body)
    assert info.value.tag == "Point"
    assert "unexpected fields 'z'" in info.value.reason
    assert "missing fields 'y'" in info.value.reason


@dataclasses.dataclass
class Reading:
    seq: int
    value: float
    unit: str | None


def test_a_body_of_plain_fields_is_built_by_msgspec_as_the_general_way_would(
    codec: Codec,
) -> None:
    codec.registry.register(Reading)
    tag, body = codec.encode(Reading(1, 2.5, None))
    assert codec.decode(tag, body) == Reading(1, 2.5, None)
    value = codec.decode(tag, msgpack.packb({"seq": 1, "value": 3, "unit": "m"}))
    assert value == Reading(1, 3.0, "m") and type(value.value) is float  # as annotated
    # What msgspec refuses is built the general way: values as they were sent...
    odd = codec.decode(tag, codec.pack({"seq": (1, 2), "value": "x", "unit": b"m"}))
    assert odd == Reading((1, 2), "x", b"m")  # type: ignore[arg-type]
    # ...or refused in its words: msgspec would have ignored the unknown name.
    with pytest.raises(DecodeError, match="unexpected fields 'other'"):
        codec.decode(tag, msgpack.packb({"seq": 1, "value": 3, "other": 0}))


def test_a_run_of_plain_bodies_is_built_as_decode_builds_each(codec: Codec) -> None:
    codec.registry.register(Reading)
    good = [codec.encode(Reading(i, i / 2, "m"))[1] for i in range(3)]
    odd = codec.pack({"seq": (1, 2), "value": "x", "unit": b"m"})  # msgspec refuses it
    extra = msgpack.packb({"seq": 1, "value": 3, "unit": None, "other": 0})

    def built(bodies: list[bytes]) -> list[Any]:
        build, general = codec.builders("Reading", bodies)
        out: list[Any] = []
        for body in bodies:
            try:
                out.append(build(body))
            except Exception as exc:
                if general is None:
                    out.append(type(exc))
                    continue
                try:
                    out.append(general(body))
                except Exception as again:
                    out.append(type(again))
        return out

    def one_by_one(bodies: list[bytes]) -> list[Any]:
        out: list[Any] = []
        for body in bodies:
            try:
                out.append(codec.decode("Reading", body))
            except Exception as exc:
                out.append(type(exc))
        return out

    for run in (good, [*good, odd], [*good, extra], [extra], [b""], [*good, b"\x83"]):
        assert built(run) == one_by_one(run), run
    # a run whose every body is a map of exactly the fields is msgspec's, in C
    assert codec.builders("Reading", good)[1] is not None
    assert codec.builders("Reading", [*good, extra])[1] is None  # the general way


def test_constructor_refusal_is_a_decode_error(codec: Codec) -> None:
    codec.registry.register(Validated)
    with pytest.raises(DecodeError, match="constructor failed"):
        codec.decode("Validated", msgpack.packb({"value": -1}))


def test_fields_must_be_a_map(codec: Codec) -> None:
    codec.registry.register(Point)
    with pytest.raises(DecodeError, match="must be a map"):
        codec.decode("Point", msgpack.packb([1, 2]))


def test_non_msgpack_bytes_are_rejected(codec: Codec) -> None:
    codec.registry.register(Point)
    for junk in [b"", b"\xc1", b"\x92\x01", b"\x81\xa1x\x01extra", b"\xd9\x05ab"]:
        with pytest.raises(DecodeError):
            codec.decode("Point", junk)
        with pytest.raises(DecodeError):
            codec.decode(PLAIN_TAG, junk)


def test_bad_extension_payloads_are_rejected(codec: Codec) -> None:
    codec.registry.register(Color)
    codec.registry.register(Point)
    bad = [
        msgpack.ExtType(99, b""),  # unknown extension code
        msgpack.ExtType(6, b"not a date"),
        msgpack.ExtType(6, b"\xff\xfe"),
        msgpack.ExtType(3, msgpack.packb({"not": "a list"})),
        msgpack.ExtType(1, msgpack.packb(["Point"])),
        msgpack.ExtType(1, msgpack.packb(["Color", "red"])),  # enum tag in a dataclass slot
        msgpack.ExtType(2, msgpack.packb(["Color", "purple"])),
        msgpack.ExtType(4, msgpack.packb([[1], [2]])),  # unhashable set members
    ]
    for ext in bad:
        with pytest.raises(DecodeError):
            codec.decode(PLAIN_TAG, msgpack.packb([ext]))


class Exploit:
    triggered = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (Exploit.trigger, ())

    @staticmethod
    def trigger() -> None:
        Exploit.triggered = True


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_shaped_payloads_are_rejected_and_nothing_runs(codec: Codec, protocol: int) -> None:
    payload = pickle.dumps(Exploit(), protocol=protocol)
    codec.registry.register(Point)
    for tag in (PLAIN_TAG, "Point", "Exploit", "builtins.eval"):
        with pytest.raises(DecodeError):
            codec.decode(tag, payload)
    # And inside an otherwise valid message, it stays inert bytes.
    assert codec.decode(PLAIN_TAG, codec.pack({"blob": payload})) == {"blob": payload}
    assert Exploit.triggered is False


def test_nesting_is_bounded_both_ways(codec: Codec) -> None:
    node = Node()
    for _ in range(MAX_NESTING - 1):
        node = Node(node)
    assert roundtrip(codec, node) == node
    with pytest.raises(EncodeError, match="nested deeper"):
        codec.encode(Node(Node(node)))
    # A hand-built payload nested far deeper than the limit is refused, not a RecursionError.
    deep = msgpack.packb(None)
    for _ in range(200):
        deep = msgpack.packb(msgpack.ExtType(3, msgpack.packb([msgpack.ExtType(3, deep)])))
    with pytest.raises(DecodeError, match="nested deeper"):
        codec.decode(PLAIN_TAG, deep)


def test_unencodable_values_raise_encode_error(codec: Codec) -> None:
    for value in [object(), {"f": lambda: None}, [1, object()], Point(1, object())]:  # type: ignore[arg-type]
        with pytest.raises(EncodeError) as info:
            codec.encode(value)
        assert isinstance(info.value, TypeError)
    with pytest.raises(EncodeError):
        codec.encode(2**64)
    # The codec is still usable after an error.
    assert roundtrip(codec, Point(1, 2)) == Point(1, 2)


def test_sending_registers_the_type_for_the_sender(codec: Codec) -> None:
    assert "Point" not in codec.registry
    codec.encode(Point(1, 2))
    assert "Point" in codec.registry


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=5), children, max_size=5)
        | st.tuples(children, children)
        | st.frozensets(st.integers(-(2**63), 2**63 - 1), max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_property_round_trip(value: Any) -> None:
    assert roundtrip(Codec(TypeRegistry()), value) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([PLAIN_TAG, "Point", "Shape", "nope"]))
def test_property_decoder_accepts_or_raises_decode_error(data: bytes, tag: str) -> None:
    codec = Codec(TypeRegistry())
    codec.registry.register(Shape)
    try:
        codec.decode(tag, data)
    except DecodeError:
        pass


def test_an_endpoint_refuses_an_unknown_nested_type_naming_it() -> None:
    sender, receiver = Codec(TypeRegistry()), Codec(TypeRegistry())
    receiver.registry.register(Point)  # knows Point, not Shape's Color
    receiver.registry.by_type.pop(Color, None)
    receiver.registry.by_tag.pop("Color", None)
    receiver.registry._add(Shape, None)  # Shape alone, none of what it references
    tag, body = sender.encode(Shape("sq", [Point(0, 0)], Color.RED))
    with pytest.raises(UnknownTypeError, match="Color"):
        receiver.decode(tag, body)


def test_registering_reaches_every_nested_type(codec: Codec) -> None:
    codec.registry.register(Shape)
    assert {"Shape", "Point", "Color"} <= set(codec.registry.tags())


def test_direct_construction_matches_the_constructor(codec: Codec) -> None:
    codec.registry.register(Point)
    spec = codec.registry.spec_of_type(Point)
    assert spec is not None and spec.direct
    built = codec.decode("Point", codec.pack({"x": 1, "y": 2}))
    assert built == Point(1, 2) and vars(built) == {"x": 1, "y": 2}
    # A map with a missing defaulted field falls back to the constructor.
    codec.registry.register(Shape)
    shape = codec.decode("Shape", codec.pack({"name": "n", "points": [], "color": Color.RED}))
    assert shape.origin is None and shape.labels == {}
