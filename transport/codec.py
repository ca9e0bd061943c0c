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
import typing
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgpack

from .errors import DecodeError, EncodeError, TagConflictError, UnknownTypeError

__all__ = ["MAX_NESTING", "PLAIN_TAG", "Codec", "TypeRegistry", "TypeSpec", "default_registry"]

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
                raise DecodeError(self.tag, f"{fields!r} is not a member") from exc
        if type(fields) is not dict:
            raise DecodeError(self.tag, f"fields must be a map, got {type(fields).__name__}")
        keys = fields.keys()
        if not (keys <= self.allowed and self.required <= keys):
            raise DecodeError(self.tag, self._field_mismatch(keys))
        try:
            return self.cls(**fields)
        except Exception as exc:  # the class's own __init__/__post_init__ refused the values
            raise DecodeError(self.tag, f"constructor failed: {exc!r}") from exc

    def _field_mismatch(self, keys: typing.KeysView[Any]) -> str:
        unexpected = sorted(repr(k) for k in keys if k not in self.allowed)
        missing = sorted(self.required - set(keys))
        parts = []
        if unexpected:
            parts.append(f"unexpected fields {', '.join(unexpected)}")
        if missing:
            parts.append(f"missing fields {', '.join(map(repr, missing))}")
        return "; ".join(parts)


def _spec_for(cls: type, tag: str) -> TypeSpec:
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return TypeSpec(cls=cls, tag=tag, is_enum=True)
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
    )


def _referenced_types(cls: type) -> Iterator[type]:
    """Dataclasses and enums named in `cls`'s field annotations, at any depth of generics."""
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
        self._by_tag: dict[str, TypeSpec] = {}
        self._by_type: dict[type, TypeSpec] = {}

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
        known = self._by_type.get(cls)
        if known is not None and (tag is None or tag == known.tag):
            return known.tag
        spec = self._add(cls, tag)
        if not spec.is_enum:
            for ref in _referenced_types(cls):
                if ref not in self._by_type:
                    self._add(ref, None)
        return spec.tag

    def _add(self, cls: type, tag: str | None) -> TypeSpec:
        tag = tag if tag is not None else cls.__qualname__
        if not tag:
            raise ValueError("a tag must be a non-empty string")
        existing = self._by_tag.get(tag)
        if existing is not None and existing.cls is not cls:
            raise TagConflictError(tag, existing.cls, cls)
        previous = self._by_type.get(cls)
        if previous is not None and previous.tag != tag:
            del self._by_tag[previous.tag]
        spec = _spec_for(cls, tag)
        self._by_tag[tag] = spec
        self._by_type[cls] = spec
        return spec

    def spec_of_type(self, cls: type) -> TypeSpec | None:
        """The spec of a registered type, or None."""
        return self._by_type.get(cls)

    def spec_of_tag(self, tag: str) -> TypeSpec | None:
        """The spec registered under `tag`, or None."""
        return self._by_tag.get(tag)

    def tag_of(self, cls: type) -> str:
        """The tag `cls` travels under, registering it if needed."""
        spec = self._by_type.get(cls)
        return spec.tag if spec is not None else self.register(cls)

    def __contains__(self, tag: object) -> bool:
        return tag in self._by_tag

    def tags(self) -> list[str]:
        """Every registered tag."""
        return list(self._by_tag)


#: The process-wide registry the agent layer uses.
default_registry: Final = TypeRegistry()


class Codec:
    """Encode and decode application messages against one `TypeRegistry`.

    A codec holds reusable msgpack packers, so it is not thread-safe: use one per
    thread (one per event loop in practice).
    """

    def __init__(self, registry: TypeRegistry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry
        self._packers: list[msgpack.Packer] = [self._new_packer()]
        self._depth = 0
        self._decode_depth = 0
        self._ext_decoders: dict[int, Callable[[bytes], Any]] = {
            EXT_DATACLASS: lambda data: self._decode_registered(data, is_enum=False),
            EXT_ENUM: lambda data: self._decode_registered(data, is_enum=True),
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

    def pack(self, value: Any) -> bytes:
        """Encode any supported value as one msgpack document (no tag)."""
        try:
            return self._packers[0].pack(value)  # type: ignore[no-any-return]
        except EncodeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode {type(value).__name__}: {exc}") from exc

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
            UnknownTypeError: `tag` is not registered in this process.
            DecodeError: the body is not msgpack, or not what the tag requires.
        """
        if tag == PLAIN_TAG:
            return self.unpack(body)
        spec = self.registry.spec_of_tag(tag)
        if spec is None:
            raise UnknownTypeError(tag)
        return spec.build(self._unpack(body, tag))

    def unpack(self, data: bytes) -> Any:
        """Decode one msgpack document produced by `pack`.

        Raises:
            DecodeError: `data` is not a valid document.
        """
        return self._unpack(data, None)

    def _unpack(self, data: bytes, tag: str | None) -> Any:
        self._decode_depth = 0
        try:
            return msgpack.unpackb(
                data, ext_hook=self._ext_hook, raw=False, strict_map_key=False
            )
        except DecodeError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # msgpack raises ValueError subclasses for malformed input, TypeError for
            # unhashable keys; UnicodeDecodeError is a ValueError.
            raise DecodeError(tag, f"{type(exc).__name__}: {exc}") from None

    def _unpack_nested(self, data: bytes, expected: type) -> Any:
        value = msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)
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
        if depth > MAX_NESTING:
            raise DecodeError(None, f"value nested deeper than {MAX_NESTING} levels")
        self._decode_depth = depth
        try:
            return decoder(data)
        finally:
            self._decode_depth = depth - 1

    def _decode_registered(self, data: bytes, *, is_enum: bool) -> Any:
        pair = self._unpack_nested(data, list)
        if len(pair) != 2 or type(pair[0]) is not str:
            raise DecodeError(None, "extension is not a [tag, value] pair")
        tag, value = pair
        spec = self.registry.spec_of_tag(tag)
        if spec is None:
            raise UnknownTypeError(tag)
        if spec.is_enum is not is_enum:
            kind = "an enum" if spec.is_enum else "a dataclass"
            raise DecodeError(tag, f"{kind} tag in the wrong extension type")
        return spec.build(value)
