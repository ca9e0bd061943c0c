"""Decode limits: what decoding one document may cost, sans-I/O.

A msgpack document can make the decoder allocate far more than its own size: an empty
map is one byte on the wire and about 70 bytes as a Python dict, and an array header
of four bytes can announce millions of elements. `unpack` bounds both, relative to the
size of what is decoded:

* no array or map may announce more elements than `DecodeLimits.max_elements` allows
  for its document (a quarter of its bytes by default), checked by msgpack at the
  header, before anything is allocated;
* the number of containers (arrays and maps) is capped at one per
  `DecodeLimits.bytes_per_container` bytes. Counting them exactly costs a call per
  container, so a document is first scanned for bytes that could start one (an upper
  bound, at memory speed); only when that bound is over the cap are they counted;
* extension values nest at most `DecodeLimits.max_depth` deep (see `codec`); plain
  arrays and maps are bounded by msgpack's own stack.

So decoding costs at most a few bytes per byte received for containers, and at most
about 20 for the worst shape of short strings; an over-limit document raises
`DecodeError`, which costs the peer that frame only.

Documents too short to hold a container over the element limit (each element takes a
byte at least) are decoded by msgspec where it is installed, about twice as fast as
msgpack for a message body: msgspec's untyped decoder builds the same values (maps,
arrays as lists, str, bin as bytes, extension values through the same hook), and
refuses a length longer than what is left of the document before allocating
anything. Whatever msgspec refuses is decoded again by msgpack, so every refusal is
msgpack's, in msgpack's words. A document with a 0xff byte, which a msgpack timestamp
needs (extension -1: msgspec would build a `datetime`), goes to msgpack directly (a
test of one byte; a -1 or a float holding that byte go too). One difference
is left, for documents no Ceylon encoder writes (tuples travel as extension values):
a map key that is an array is refused by msgpack (a list is unhashable) and becomes
a tuple key with msgspec.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgpack

from .errors import DecodeError

try:
    import msgspec
except ImportError:  # not built for this platform: msgpack decodes everything
    msgspec = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "QuickDecoder",
    "fields_decoder",
    "instance_decoder",
    "quick_decoder",
    "unpack",
    "unpacker",
]

# Bytes that may start an array or a map: fixmap, fixarray, array16/32, map16/32.
_CONTAINER_BYTES: Final = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_SCAN_CHUNK: Final = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Per-document decode limits (see the module docstring).

    Attributes:
        max_depth: deepest nesting of extension values (dataclasses, enums, tuples...).
        elements_divisor: an array or map may hold at most ``size // elements_divisor``
            elements (plus `floor`).
        bytes_per_container: at most ``size // bytes_per_container`` arrays and maps
            (plus `floor`).
        floor: allowance every document gets, however small.
        scan_above: documents up to this size are small enough to decode unchecked.
    """

    max_depth: int = 32
    elements_divisor: int = 4
    bytes_per_container: int = 32
    floor: int = 256
    scan_above: int = 4096

    def __post_init__(self) -> None:
        if min(self.max_depth, self.elements_divisor, self.bytes_per_container) < 1:
            raise ValueError("decode limits must be positive")

    def max_elements(self, size: int) -> int:
        """Elements one array or map of a `size`-byte document may hold."""
        return size // self.elements_divisor + self.floor

    def max_containers(self, size: int) -> int:
        """Arrays and maps a `size`-byte document may hold in all."""
        return size // self.bytes_per_container + self.floor


DEFAULT_LIMITS: Final = DecodeLimits()


def container_bound(data: bytes | bytearray | memoryview) -> int:
    """An upper bound of the arrays and maps in `data` (bytes that could start one)."""
    view = memoryview(data)
    count = 0
    for start in range(0, len(view), _SCAN_CHUNK):
        chunk = bytes(view[start : start + _SCAN_CHUNK])
        count += len(chunk) - len(chunk.translate(None, _CONTAINER_BYTES))
    return count


class _Budget:
    """Counts containers as msgpack completes them; raises past the cap."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def __call__(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise DecodeError(None, "too many arrays and maps for the size of the frame")
        return value


def unpack(
    data: bytes | bytearray | memoryview,
    limits: DecodeLimits = DEFAULT_LIMITS,
    ext_hook: Callable[[int, bytes], Any] | None = None,
    *,
    few_containers: bool = False,
) -> Any:
    """Decode one msgpack document within `limits`.

    Args:
        data: the document.
        limits: what it may cost.
        ext_hook: builds extension values; without one, any extension is refused.
        few_containers: the document should hold only a handful of arrays and maps (a
            message group holds one): a large one has them counted as they are built,
            one call each, instead of its bytes scanned first.

    Raises:
        DecodeError: not msgpack, or over a limit (the message names which).
    """
    if ext_hook is None:
        key = (id(limits), few_containers)  # by identity: hashing the limits costs a call
        entry = _PLAIN.get(key)
        if entry is None or entry[0] is not limits:
            if len(_PLAIN) >= 16:
                _PLAIN.clear()
            entry = _PLAIN[key] = (limits, unpacker(limits, few_containers=few_containers))
        return entry[1](data)
    return unpacker(limits, ext_hook, few_containers=few_containers)(data)


def unpacker(
    limits: DecodeLimits = DEFAULT_LIMITS,
    ext_hook: Callable[[int, bytes], Any] | None = None,
    *,
    few_containers: bool = False,
) -> Callable[[bytes | bytearray | memoryview], Any]:
    """`unpack` with its arguments bound, for decoding many documents: a document no
    bigger than `DecodeLimits.scan_above` takes one call with fixed limits (those of
    the largest such document), which is most of what an agent receives."""
    unpackb = msgpack.unpackb
    small = limits.scan_above
    cap = limits.max_elements(small)
    if ext_hook is None:
        hook: Callable[[int, bytes], Any] = _no_extensions
    else:
        hook = ext_hook
    quick, quick_max = _quick_decoder(hook), min(small, cap)

    def unpack_one(data: bytes | bytearray | memoryview) -> Any:
        # The small case spells its arguments out: msgpack parses keywords per call,
        # and merging a dict of them costs as much as the decoding itself.
        size = len(data)
        try:
            if (
                size <= quick_max
                and quick is not None
                and type(data) is bytes
                and 0xFF not in data  # no msgpack timestamp (extension -1) in it
            ):
                try:
                    return quick(data)
                except (msgspec.DecodeError, RecursionError):
                    pass  # msgpack gives the verdict below, in its own words
            if size <= small:
                return unpackb(
                    data, strict_map_key=False, max_array_len=cap, max_map_len=cap, ext_hook=hook
                )
            options = _large(data, limits, few_containers)
            return unpackb(data, strict_map_key=False, ext_hook=hook, **options)
        except DecodeError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError, msgpack.StackError) as exc:
            raise _refusal(exc) from None

    return unpack_one


def fields_decoder(
    names: tuple[str, ...],
    limits: DecodeLimits = DEFAULT_LIMITS,
    ext_hook: Callable[[int, bytes], Any] | None = None,
) -> Callable[[bytes], dict[str, Any] | None] | None:
    """For documents that should be a map of exactly the fields `names` (a message
    body): a function returning that map, or None when the document is anything else
    or is not msgspec's to decode (see the module docstring); then decode it with
    `unpack`, which gives the verdict. None without msgspec, or for names msgspec's
    structs cannot have.

    msgspec checks the names in C while it decodes (a struct of these fields, each of
    any type: no coercion, no validation of the values, no unknown or missing names),
    which saves decoding into a dict and comparing its keys: ~120 ns of ~510 ns per
    message body. The values are the ones `unpack` would give; the map is in the
    order of `names`.

    Raises:
        DecodeError: a document only msgpack could have judged otherwise does not
            reach msgspec, so this is what `ext_hook` raised (or its refusal).
    """
    if msgspec is None:
        return None
    try:
        shadow = msgspec.defstruct(
            "Fields", [(name, Any) for name in names], forbid_unknown_fields=True, gc=False
        )
    except Exception:  # a name a struct cannot have (msgspec says which): the usual way
        return None
    hook = ext_hook if ext_hook is not None else _no_extensions

    def ext(code: int, data: memoryview) -> Any:
        return hook(code, bytes(data))

    decode = msgspec.msgpack.Decoder(shadow, ext_hook=ext).decode
    asdict = msgspec.structs.asdict
    largest = min(limits.scan_above, limits.max_elements(limits.scan_above))

    def fields_of(data: bytes) -> dict[str, Any] | None:
        # The same documents as `unpacker`'s msgspec case (twin), for the same reasons.
        if len(data) > largest or type(data) is not bytes or 0xFF in data:
            return None
        try:
            return asdict(decode(data))
        except (msgspec.DecodeError, RecursionError):
            return None  # not exactly these fields, or malformed: `unpack` decides
        except DecodeError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # raised by `ext_hook`
            raise _refusal(exc) from None

    return fields_of


#: field annotations msgspec decodes to exactly what msgpack gives (a float field also
#: takes an int, as a float), refusing every other value (extension values included)
_PLAIN_FIELD_TYPES: Final = frozenset({int, float, str, bool, bytes})


class QuickDecoder(NamedTuple):
    """Decodes a body straight into an instance (see `quick_decoder`)."""

    #: msgspec's decoder; it raises `msgspec.DecodeError` on a body it judges otherwise
    #: than the general way could
    decode: Callable[[bytes], Any]
    #: the first byte of every body `decode` may be given: a fixmap of exactly the fields
    #: (msgspec ignores unknown names, so the map's header must count them all)
    header: bytes


def quick_decoder(cls: type) -> QuickDecoder | None:
    """For a dataclass of plain fields (each annotated int, float, str, bool or bytes,
    or one of those or None), all of them init fields without a default, at most 15: a
    decoder of a body straight into an instance (msgspec, in C: about half of what
    decoding the map and building the instance costs in Python). None without msgspec,
    or for another kind of class.

    A body that starts with `QuickDecoder.header` and that `decode` accepts is built as
    the general way builds it; a body it refuses may still be one the general way takes
    (a value not of its field's type). The one difference: an int sent in a float field
    arrives as a float. The caller promises the class's ``__init__`` only stores its
    fields (see `codec.TypeSpec.direct`): msgspec does not call it.
    """
    if msgspec is None or not dataclasses.is_dataclass(cls):
        return None
    fields = dataclasses.fields(cls)
    if not 0 < len(fields) <= 15 or any(
        not f.init
        or f.default is not dataclasses.MISSING
        or f.default_factory is not dataclasses.MISSING
        for f in fields
    ):
        return None
    try:
        hints = typing.get_type_hints(cls)
        decode = msgspec.msgpack.Decoder(cls).decode
    except Exception:  # unresolvable forward references; a class msgspec refuses
        return None
    if not all(_plain_field(hints.get(f.name)) for f in fields):
        return None
    return QuickDecoder(decode, bytes([0x80 | len(fields)]))


def instance_decoder(
    quick: QuickDecoder, fallback: Callable[[bytes], Any]
) -> Callable[[bytes], Any]:
    """`quick` for one body at a time: a body it does not take goes to `fallback` (the
    general way)."""
    decode, header = quick

    def instance_of(data: bytes) -> Any:
        # A map of scalars costs its size to decode, whatever its size: no limit
        # applies. A value of a container or an extension type fails validation at
        # its header, as does a timestamp (which `unpacker` keeps from msgspec).
        if data[:1] == header:
            try:
                return decode(data)
            except msgspec.DecodeError:  # ValidationError is one
                pass  # the general way says what is wrong
        return fallback(data)

    return instance_of


def _plain_field(hint: Any) -> bool:
    if hint in _PLAIN_FIELD_TYPES:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(options) == 1 and options[0] in _PLAIN_FIELD_TYPES
    return False


def _quick_decoder(hook: Callable[[int, bytes], Any]) -> Callable[[bytes], Any] | None:
    """msgspec's untyped decoder calling `hook` as msgpack would (see the module
    docstring), or None without msgspec."""
    if msgspec is None:
        return None

    def ext(code: int, data: memoryview) -> Any:
        return hook(code, bytes(data))  # msgspec lends a view; the hooks expect bytes

    decoder: Callable[[bytes], Any] = msgspec.msgpack.Decoder(ext_hook=ext).decode
    return decoder


#: `unpacker(limits, few_containers=...)` by (id(limits), few_containers), with the limits
#: they were made for (the id of a collected object may come back for another one)
_PLAIN: dict[
    tuple[int, bool], tuple[DecodeLimits, Callable[[bytes | bytearray | memoryview], Any]]
] = {}


def _no_extensions(code: int, data: bytes) -> Any:
    raise DecodeError(None, f"extension values are not accepted here (type {code})")


def _large(
    data: bytes | bytearray | memoryview, limits: DecodeLimits, count: bool
) -> dict[str, Any]:
    size = len(data)
    cap = limits.max_elements(size)
    options: dict[str, Any] = {"max_array_len": cap, "max_map_len": cap}
    budget = limits.max_containers(size)
    if count or container_bound(data) > budget:
        counter = _Budget(budget)
        options["object_hook"] = counter
        options["list_hook"] = counter
    return options


def _refusal(exc: BaseException) -> DecodeError:
    # msgpack reports malformed input and exceeded limits as ValueError subclasses
    # (UnicodeDecodeError among them), unhashable keys as TypeError. The message names
    # the problem, never the values.
    text = _describe(exc)
    if "exceeds" in text or isinstance(exc, msgpack.StackError):
        return DecodeError(None, f"over a decode limit: {text or type(exc).__name__}")
    return DecodeError(None, f"not msgpack: {type(exc).__name__}: {text}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
