"""Application-message codec: dataclasses and plain values to msgpack and back, sans-I/O.

A message travels as a type tag plus a body. The tag is a stable string (by default the
class's ``__qualname__``, so it is the same when the defining module runs as
``__main__``); the body is msgpack. Values msgpack cannot carry natively travel as
extension types: nested dataclasses and enums (with their tags), tuples, sets,
frozensets, datetimes and dates.

Decoding builds only types registered in this `TypeRegistry`: the tag is looked up,
the field names are checked against the dataclass, and the class is called. Nothing on
this path unpickles, evaluates or imports anything.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import operator
import typing
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgpack

from .errors import DecodeError, EncodeError, TagConflictError, UnknownTypeError
from .limits import (
    DEFAULT_LIMITS,
    DecodeLimits,
    QuickDecoder,
    fields_decoder,
    instance_decoder,
    quick_decoder,
    unpacker,
)

__all__ = [
    "MAX_NESTING",
    "PLAIN_TAG",
    "Codec",
    "TypeRegistry",
    "TypeSpec",
    "default_registry",
]

#: Tag of a top-level value that is not a registered type (a str, a dict, a list...).
PLAIN_TAG: Final = ""
#: Deepest nesting of dataclasses/enums/containers-as-extensions accepted either way.
MAX_NESTING: Final = 32

# Extension type codes. Stable: they are part of the wire format.
EXT_DATACLASS: Final = 1
EXT_ENUM: Final = 2
EXT_TUPLE: Final = 3
EXT_SET: Final = 4
EXT_FROZENSET: Final = 5
EXT_DATETIME: Final = 6
EXT_DATE: Final = 7


@dataclasses.dataclass(frozen=True, slots=True)
class TypeSpec:
    """What the codec knows about one registered type."""

    cls: type
    tag: str
    is_enum: bool
    #: init fields, in order; the names sent on the wire
    names: tuple[str, ...] = ()
    #: init fields without a default: a payload must carry all of them
    required: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()
    #: instances keep exactly their fields in ``__dict__``, which can be sent as is
    dict_ok: bool = False
    #: the tag as a packed msgpack string, ready to be written before a body
    packed_tag: bytes = b""
    #: len(names) and len(packed_tag), read on every message sent
    size: int = 0
    tag_size: int = 0
    #: the generated __init__ would only store the fields: a received map can become
    #: the instance's ``__dict__`` directly (see `_plain_init`)
    direct: bool = False

    def fields_of(self, obj: Any) -> dict[str, Any]:
        """The wire fields of an instance of this dataclass."""
        if self.dict_ok:
            d: dict[str, Any] = obj.__dict__
            if len(d) == len(self.names):
                return d
        return {name: getattr(obj, name) for name in self.names}

    def build(self, fields: Any) -> Any:
        """Construct an instance from decoded fields.

        Raises:
            DecodeError: the fields are not a map, miss required names, carry unknown
                names, or the constructor refuses them.
        """
        if self.is_enum:
            try:
                return self.cls(fields)
            except (ValueError, TypeError) as exc:
                raise DecodeError(
                    self.tag, f"a {type(fields).__name__} that is not a member"
                ) from exc
        if type(fields) is not dict:
            raise DecodeError(self.tag, f"fields must be a map, got {type(fields).__name__}")
        if self.direct and fields.keys() == self.allowed:
            # What the generated __init__ would do, at a third of the cost; the decoded
            # map is owned by nobody else, so it becomes the instance's own.
            obj: Any = _new_object(self.cls)
            obj.__dict__ = fields
            return obj
        try:
            # Unknown or missing names fail in argument binding, before any code of the
            # class runs; checking them first would cost every message.
            return self.cls(**fields)
        except Exception as exc:
            keys = fields.keys()
            if not (keys <= self.allowed and self.required <= keys):
                raise DecodeError(self.tag, self._field_mismatch(keys)) from None
            raise DecodeError(self.tag, f"constructor failed: {type(exc).__name__}") from exc

    def _field_mismatch(self, keys: typing.KeysView[Any]) -> str:
        unexpected = sorted(repr(k)[:40] for k in keys if k not in self.allowed)[:5]
        missing = sorted(self.required - set(keys))
        parts = []
        if unexpected:
            parts.append(f"unexpected fields {', '.join(unexpected)}")
        if missing:
            parts.append(f"missing fields {', '.join(map(repr, missing))}")
        return "; ".join(parts)


_new_object = object.__new__
_object_setattr: Any = object.__setattr__


def _plain_init(cls: type) -> bool:
    """True if constructing `cls` only stores its init fields as instance attributes.

    That holds for a dataclass whose ``__init__`` was generated by `dataclasses` (not
    written by hand), without ``__post_init__``, a custom ``__setattr__`` (frozen ones
    have one) or slots. Anything else is built by calling the class.
    """
    init = cls.__dict__.get("__init__") or getattr(cls, "__init__", None)
    code = getattr(init, "__code__", None)
    return (
        code is not None
        and code.co_filename == "<string>"  # dataclasses generates it with exec()
        and not hasattr(cls, "__post_init__")
        and getattr(cls, "__setattr__", None) is _object_setattr
        and not hasattr(cls, "__slots__")
        and all(f.init for f in dataclasses.fields(cls))
    )


def _spec_for(cls: type, tag: str) -> TypeSpec:
    packed_tag = msgpack.packb(tag)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return TypeSpec(cls=cls, tag=tag, is_enum=True, packed_tag=packed_tag)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"only dataclasses and Enum subclasses can be registered, not {cls!r}")
    fields = dataclasses.fields(cls)
    init = [f for f in fields if f.init]
    required = frozenset(
        f.name
        for f in init
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    names = tuple(f.name for f in init)
    dict_ok = len(init) == len(fields) and not hasattr(cls, "__slots__")
    return TypeSpec(
        cls=cls,
        tag=tag,
        is_enum=False,
        names=names,
        required=required,
        allowed=frozenset(names),
        dict_ok=dict_ok,
        packed_tag=packed_tag,
        size=len(names),
        tag_size=len(packed_tag),
        direct=_plain_init(cls),
    )


def _referenced_types(cls: type) -> Iterator[type]:
    """Dataclasses and enums named in `cls`'s field annotations, at any depth of generics."""
    if not dataclasses.is_dataclass(cls):
        return
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: those types register when sent
        return
    stack: list[Any] = [hints[f.name] for f in dataclasses.fields(cls) if f.name in hints]
    while stack:
        hint = stack.pop()
        if isinstance(hint, type) and (
            dataclasses.is_dataclass(hint) or issubclass(hint, enum.Enum)
        ):
            yield hint
        stack.extend(typing.get_args(hint))


class TypeRegistry:
    """Maps stable tags to the dataclasses and enums this process may construct."""

    def __init__(self) -> None:
        # Read directly on the hot paths (a method call per message adds up); change
        # them only through `register`.
        self.by_tag: dict[str, TypeSpec] = {}
        self.by_type: dict[type, TypeSpec] = {}
        #: the types whose instances are sent by packing their ``__dict__`` as it is
        #: (`TypeSpec.dict_ok`): what a sender looks up first
        self.plain: dict[type, TypeSpec] = {}
        #: bumped on every registration, so caches keyed by tag know to start over
        self.version = 0

    def register(self, cls: type, tag: str | None = None) -> str:
        """Register `cls` (and the dataclasses/enums its fields name) for decoding.

        Args:
            cls: a dataclass or an `Enum` subclass.
            tag: the wire name; defaults to ``cls.__qualname__``.

        Returns:
            The tag `cls` travels under.

        Raises:
            TagConflictError: another type already holds the tag.
            TypeError: `cls` is neither a dataclass nor an Enum.
        """
        known = self.by_type.get(cls)
        if known is not None and (tag is None or tag == known.tag):
            return known.tag
        spec = self._add(cls, tag)
        # Everything reachable through field annotations, at any depth: a receiver
        # that registers `Order` can build the `Item`s in it and the `Course` in those.
        todo = [cls]
        while todo:
            for ref in _referenced_types(todo.pop()):
                if ref not in self.by_type:
                    self._add(ref, None)
                    todo.append(ref)
        return spec.tag

    def _add(self, cls: type, tag: str | None) -> TypeSpec:
        tag = tag if tag is not None else cls.__qualname__
        if not tag:
            raise ValueError("a tag must be a non-empty string")
        existing = self.by_tag.get(tag)
        if existing is not None and existing.cls is not cls:
            raise TagConflictError(tag, existing.cls, cls)
        previous = self.by_type.get(cls)
        if previous is not None and previous.tag != tag:
            del self.by_tag[previous.tag]
        spec = _spec_for(cls, tag)
        self.version += 1
        self.by_tag[tag] = spec
        self.by_type[cls] = spec
        if spec.dict_ok:
            self.plain[cls] = spec
        else:
            self.plain.pop(cls, None)
        return spec

    def spec_of_type(self, cls: type) -> TypeSpec | None:
        """The spec of a registered type, or None."""
        return self.by_type.get(cls)

    def resolve(self, tag: str) -> TypeSpec | None:
        """The spec of `tag`: registered types only.

        A handler for ``Task`` accepts a ``CustomTask(Task)`` that is registered here (by
        a handler, by sending one, by `register`, or ``--import``); a tag naming any other
        class, even a subclass of a registered one defined in this process, builds
        nothing: a peer cannot make an unregistered class run.
        """
        return self.by_tag.get(tag)

    def tag_of(self, cls: type) -> str:
        """The tag `cls` travels under, registering it if needed."""
        spec = self.by_type.get(cls)
        return spec.tag if spec is not None else self.register(cls)

    def __contains__(self, tag: object) -> bool:
        return tag in self.by_tag

    def tags(self) -> list[str]:
        """Every registered tag."""
        return list(self.by_tag)


#: The process-wide registry the agent layer uses.
default_registry: Final = TypeRegistry()


#: the first byte of a body, as bytes (empty for an empty body)
_FIRST_BYTE: Final = operator.itemgetter(slice(0, 1))


def _unbuilt(code: int, data: bytes) -> None:
    return None


class Codec:
    """Encode and decode application messages against one `TypeRegistry`.

    A codec holds reusable msgpack packers, so it is not thread-safe: use one per
    thread (one per event loop in practice).
    """

    def __init__(
        self, registry: TypeRegistry | None = None, limits: DecodeLimits = DEFAULT_LIMITS
    ) -> None:
        self.registry = registry if registry is not None else default_registry
        #: what decoding one body may cost (see `transport.limits`)
        self.limits = limits
        self._packers: list[msgpack.Packer] = [self._new_packer()]
        self._depth = 0
        self._decode_depth = 0
        self._tag_bytes: dict[str, bytes] = {}
        self._unpack = unpacker(limits, self._ext_hook)
        self._peek = unpacker(limits, _unbuilt)
        # Read on every message: looked up here once rather than through the registry.
        self._specs = self.registry.by_type
        self._by_tag = self.registry.by_tag
        #: `builder` of each registered tag seen (a tag never changes its type)
        self._builders: dict[str, Callable[[bytes], Any]] = {}
        #: msgspec's decoder of each tag seen whose type it can build (`quick_decoder`)
        self._quick: dict[str, QuickDecoder] = {}
        #: the top-level packer's ``pack``: what a message body is packed with
        self.pack_body: Callable[[Any], bytes] = self._packers[0].pack
        self._ext_decoders: dict[int, Callable[[bytes], Any]] = {
            EXT_DATACLASS: lambda data: self._decode_registered(EXT_DATACLASS, data),
            EXT_ENUM: lambda data: self._decode_registered(EXT_ENUM, data),
            EXT_TUPLE: lambda data: tuple(self._unpack_nested(data, list)),
            EXT_SET: lambda data: set(self._unpack_nested(data, list)),
            EXT_FROZENSET: lambda data: frozenset(self._unpack_nested(data, list)),
            EXT_DATETIME: lambda data: _dt.datetime.fromisoformat(data.decode()),
            EXT_DATE: lambda data: _dt.date.fromisoformat(data.decode()),
        }

    def _new_packer(self) -> msgpack.Packer:
        return msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)

    # -- encoding ---------------------------------------------------------------

    def encode(self, obj: Any) -> tuple[str, bytes]:
        """Encode a message into its tag and body.

        A registered (or registrable) dataclass gets its own tag and its fields as the
        body; any other supported value travels under `PLAIN_TAG`.

        Raises:
            EncodeError: `obj` contains something the codec cannot encode.
        """
        spec = self.registry.spec_of_type(type(obj))
        if spec is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            spec = self._register_for_send(type(obj))
        try:
            if spec is not None and not spec.is_enum:
                return spec.tag, self._packers[0].pack(spec.fields_of(obj))
            return PLAIN_TAG, self._packers[0].pack(obj)
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode {type(obj).__name__}: {exc}") from exc

    def encode_packed(self, obj: Any) -> tuple[bytes, bytes]:
        """Like `encode`, with the tag already packed: what a message group holds.

        Raises:
            EncodeError: `obj` contains something the codec cannot encode.
        """
        spec = self._specs.get(type(obj))
        if spec is not None and spec.dict_ok:
            fields = obj.__dict__
            if len(fields) == len(spec.names):
                try:
                    return spec.packed_tag, self._packers[0].pack(fields)
                except (TypeError, ValueError, OverflowError):
                    pass  # the slow path below says what went wrong
        tag, body = self.encode(obj)
        return self.tag_bytes(tag), body

    def pack(self, value: Any) -> bytes:
        """Encode any supported value as one msgpack document (no tag)."""
        try:
            return self._packers[0].pack(value)  # type: ignore[no-any-return]
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode {type(value).__name__}: {exc}") from exc

    def tag_bytes(self, tag: str) -> bytes:
        """`tag` packed as a msgpack string (cached: tags repeat on every message)."""
        packed = self._tag_bytes.get(tag)
        if packed is None:
            if len(self._tag_bytes) >= 10_000:  # tags come from this side's own types
                self._tag_bytes.clear()
            packed = self._tag_bytes[tag] = self._packers[0].pack(tag)
        return packed

    def _register_for_send(self, cls: type) -> TypeSpec:
        self.registry.register(cls)
        spec = self.registry.spec_of_type(cls)
        assert spec is not None
        return spec

    def _nested(self, code: int, value: Any) -> msgpack.ExtType:
        # A packer is not re-entrant: each nesting level packs with its own.
        depth = self._depth + 1
        if depth > MAX_NESTING:
            raise EncodeError(f"value nested deeper than {MAX_NESTING} levels")
        if depth == len(self._packers):
            self._packers.append(self._new_packer())
        self._depth = depth
        try:
            return msgpack.ExtType(code, self._packers[depth].pack(value))
        finally:
            self._depth = depth - 1

    def _default(self, obj: Any) -> Any:
        cls = type(obj)
        spec = self.registry.spec_of_type(cls)
        if spec is None:
            if isinstance(obj, enum.Enum) or (
                dataclasses.is_dataclass(obj) and not isinstance(obj, type)
            ):
                spec = self._register_for_send(cls)
        if spec is not None:
            if spec.is_enum:
                return self._nested(EXT_ENUM, [spec.tag, obj.value])
            return self._nested(EXT_DATACLASS, [spec.tag, spec.fields_of(obj)])
        if isinstance(obj, tuple):
            return self._nested(EXT_TUPLE, list(obj))
        if isinstance(obj, frozenset):
            return self._nested(EXT_FROZENSET, list(obj))
        if isinstance(obj, set):
            return self._nested(EXT_SET, list(obj))
        if isinstance(obj, _dt.datetime):
            return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
        if isinstance(obj, _dt.date):
            return msgpack.ExtType(EXT_DATE, obj.isoformat().encode())
        # Subclasses of the native types (str/int/float enums are caught above).
        if isinstance(obj, dict):
            return dict(obj)
        if isinstance(obj, list):
            return list(obj)
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        raise EncodeError(f"cannot encode a value of type {cls.__module__}.{cls.__qualname__}")

    # -- decoding ---------------------------------------------------------------

    def decode(self, tag: str, body: bytes) -> Any:
        """Decode a body received under `tag`.

        Raises:
            UnknownTypeError: `tag`, or a type nested in the body, is not registered here.
            DecodeError: the body is not msgpack, is over a decode limit, or is not what
                the tag requires.
        """
        build = self._builders.get(tag)  # `builder(tag)`, its common case one call less
        if build is None:
            build = self.builder(tag)
        return build(body)

    def builder(self, tag: str) -> Callable[[bytes], Any]:
        """`decode` for bodies of one tag, its lookups done once: what a run of messages
        of one tag is built with. The callable raises what `decode` raises."""
        build = self._builders.get(tag)
        if build is not None:
            return build
        spec = self._by_tag.get(tag)
        if spec is None or not spec.direct:  # not cached: the tag may be registered later
            return lambda body: self.build(tag, self.unpack(body, tag))
        build = self._builders[tag] = self._direct_builder(tag, spec)
        return build

    def builders(
        self, tag: str, bodies: list[bytes]
    ) -> tuple[Callable[[bytes], Any], Callable[[bytes], Any] | None]:
        """What builds `bodies`, a run of messages of one tag: ``(build, general)``.

        `build` may be quicker than `builder(tag)` but refuse a body the general way
        takes; when it raises, `general` (None: `build` is the general way) decides.
        """
        build = self._builders.get(tag) or self.builder(tag)
        quick = self._quick.get(tag)
        if quick is not None:
            # Looked at in C for the whole run: every body is a map of as many entries as
            # the type has fields, which msgspec alone would not check.
            firsts = set(map(_FIRST_BYTE, bodies))
            if len(firsts) == 1 and quick.header in firsts:
                return quick.decode, build
        return build, None

    def _direct_builder(self, tag: str, spec: TypeSpec) -> Callable[[bytes], Any]:
        """Builds a `TypeSpec.direct` type: the decoded map becomes the instance's own
        ``__dict__`` when its keys are the fields (`TypeSpec.build`'s fast path, inlined:
        it is the receive path of every message). A body msgspec decodes with its names
        checked (`fields_decoder`) skips the comparison of keys; a type of plain fields is
        built by msgspec itself (`instance_decoder`), this builder its fallback."""
        cls, allowed, unpack, build = spec.cls, spec.allowed, self._unpack, spec.build
        fields_of = fields_decoder(spec.names, self.limits, self._ext_hook)

        def build_direct(body: bytes) -> Any:
            self._decode_depth = 0
            try:
                if fields_of is not None:
                    fields = fields_of(body)
                    if fields is not None:
                        obj: Any = _new_object(cls)
                        obj.__dict__ = fields
                        return obj
                value = unpack(body)
            except DecodeError as exc:
                if exc.tag is None and type(exc) is DecodeError:
                    raise DecodeError(tag, exc.reason) from None
                raise
            if type(value) is dict and value.keys() == allowed:
                obj = _new_object(cls)
                obj.__dict__ = value
                return obj
            return build(value)

        quick = quick_decoder(cls)
        if quick is None:
            return build_direct
        self._quick[tag] = quick
        return instance_decoder(quick, build_direct)

    def build(self, tag: str, value: Any) -> Any:
        """Turn an unpacked body into the message it encodes.

        Raises:
            UnknownTypeError: `tag` is not registered here.
            DecodeError: `value` does not fit the type.
        """
        spec = self._by_tag.get(tag) or self.registry.resolve(tag)
        if spec is not None:
            if spec.direct and type(value) is dict and value.keys() == spec.allowed:
                obj: Any = _new_object(spec.cls)  # TypeSpec.build's fast path, inlined
                obj.__dict__ = value
                return obj
            return spec.build(value)
        if tag == PLAIN_TAG:
            return value
        raise UnknownTypeError(tag)

    def peek(self, body: bytes) -> dict[str, Any] | None:
        """The top-level fields of a message body, without building anything: nested
        registered values come back as None. For saying what a message that could not
        be decoded was about (its id, say); None when the body is not a map of fields.
        """
        try:
            value = self._peek(body)
        except DecodeError:
            return None
        return value if type(value) is dict else None

    def unpack(self, data: bytes | bytearray, tag: str | None = None) -> Any:
        """Decode one msgpack document within `limits`, building the registered types
        nested in it.

        Raises:
            UnknownTypeError: a nested value's type is not registered here.
            DecodeError: `data` is not a valid document or is over a decode limit
                (`tag` is named in the error).
        """
        self._decode_depth = 0
        try:
            return self._unpack(data)
        except DecodeError as exc:
            if exc.tag is None and tag is not None and type(exc) is DecodeError:
                raise DecodeError(tag, exc.reason) from None
            raise

    def _unpack_nested(self, data: bytes, expected: type) -> Any:
        value = self._unpack(data)
        if type(value) is not expected:
            raise DecodeError(
                None, f"extension holds {type(value).__name__}, not {expected.__name__}"
            )
        return value

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decoder = self._ext_decoders.get(code)
        if decoder is None:
            raise DecodeError(None, f"unknown extension type {code}")
        depth = self._decode_depth + 1
        if depth > self.limits.max_depth:
            raise DecodeError(None, f"value nested deeper than {self.limits.max_depth} levels")
        self._decode_depth = depth
        try:
            return decoder(data)
        finally:
            self._decode_depth = depth - 1

    def _decode_registered(self, code: int, data: bytes) -> Any:
        pair = self._unpack_nested(data, list)
        if len(pair) != 2 or type(pair[0]) is not str:
            raise DecodeError(None, "extension is not a [tag, value] pair")
        tag, value = pair
        spec = self._by_tag.get(tag) or self.registry.resolve(tag)
        if spec is None:
            raise UnknownTypeError(tag)
        if spec.is_enum is not (code == EXT_ENUM):
            kind = "an enum" if spec.is_enum else "a dataclass"
            raise DecodeError(tag, f"{kind} tag in the wrong extension type")
        return spec.build(value)
