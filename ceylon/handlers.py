"""Handler decorators and the per-class handler table.

``@on(T)`` marks an ``async def`` method as the handler of messages of type ``T`` (and of
its dataclass subclasses). The parameters ``time`` and ``agent`` are injected when the
handler declares them: the receipt time in milliseconds since the epoch and the
sender's `AgentDetail`. ``@on_connect(pattern)`` / ``@on_disconnect(pattern)`` receive
``(topic, agent)`` when an agent whose workspace and role match ``pattern`` joins or
leaves; ``@on_run()`` marks the agent's main loop.

Signatures are checked when the decorator is applied, that is when the class body runs,
so a mistake is a `HandlerSignatureError` at import time rather than a surprise when
the first message arrives. The table of a class is built once, over its MRO: a
subclass inherits its bases' handlers and overrides one by defining a method of the same
name.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal, TypeVar

from .errors import HandlerSignatureError

__all__ = [
    "HandlerSpec",
    "HandlerTable",
    "on",
    "on_connect",
    "on_disconnect",
    "on_run",
    "pattern_matches",
    "validate_handler",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Kind = Literal["message", "connect", "disconnect", "run"]

MARK: Final = "__ceylon_handlers__"
INJECTED: Final = ("time", "agent")


@dataclasses.dataclass(frozen=True)
class HandlerSpec:
    """One decorated handler, with what to inject resolved once."""

    kind: Kind
    func: Callable[..., Awaitable[Any]]
    message_type: type | None = None
    pattern: str = "*"
    wants_time: bool = False
    wants_agent: bool = False
    wants_inputs: bool = False
    #: registered on an instance: called without ``self``
    bound: bool = False
    #: the injected parameters in their positional order after the message, when they
    #: can be passed by position (faster than by keyword); None: pass them by keyword
    positional: tuple[str, ...] | None = None
    #: a message handler method taking the message alone: called ``func(owner, message)``
    #: (the dispatcher's fast path)
    message_only: bool = dataclasses.field(init=False, default=False)
    #: a message handler method taking the message and the sender: called
    #: ``func(owner, message, sender)`` (the dispatcher's other fast path)
    with_agent: bool = dataclasses.field(init=False, default=False)

    def __post_init__(self) -> None:
        method = self.kind == "message" and not self.bound
        object.__setattr__(self, "message_only", method and self.positional == ())
        object.__setattr__(self, "with_agent", method and self.positional == ("agent",))

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", repr(self.func))


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError) as exc:
        raise HandlerSignatureError(func, f"cannot read its signature ({exc})") from None


def validate_handler(
    func: Callable[..., Any],
    kind: Kind,
    *,
    bound: bool,
    message_type: type | None = None,
    pattern: str = "*",
) -> HandlerSpec:
    """Check `func` fits a handler of `kind` and resolve its injected parameters.

    Args:
        func: the handler.
        kind: what it handles.
        bound: False for a method (its first parameter is ``self``), True for a plain
            function registered on an instance.

    Raises:
        HandlerSignatureError: not ``async def``, or parameters that cannot be supplied.
    """
    if not inspect.iscoroutinefunction(func):
        raise HandlerSignatureError(func, "must be an 'async def' function")
    params = _params(func)
    if not bound:
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise HandlerSignatureError(func, "a method handler needs 'self' first")
        params = params[1:]
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    names = {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if kind == "message":
        spec = _message_spec(func, params, positional, names, has_var_kw, message_type)
        return dataclasses.replace(spec, bound=bound)
    if kind in ("connect", "disconnect"):
        required = [p for p in positional if p.default is inspect.Parameter.empty]
        if len(positional) < 2 or len(required) > 2 or _required_kw_only(params):
            raise HandlerSignatureError(
                func, f"an on_{kind} handler takes (topic: str, agent: AgentDetail)"
            )
        return HandlerSpec(kind, func, pattern=pattern, bound=bound)
    # run
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if len(required) > 1 or _required_kw_only(params):
        raise HandlerSignatureError(func, "an on_run handler takes no argument or (inputs)")
    return HandlerSpec(kind, func, wants_inputs=bool(positional), bound=bound)


def _required_kw_only(params: list[inspect.Parameter]) -> list[str]:
    return [
        p.name
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.default is inspect.Parameter.empty
        and p.name not in INJECTED
    ]


def _message_spec(
    func: Callable[..., Any],
    params: list[inspect.Parameter],
    positional: list[inspect.Parameter],
    names: set[str],
    has_var_kw: bool,
    message_type: type | None,
) -> HandlerSpec:
    if not positional or positional[0].name in INJECTED:
        raise HandlerSignatureError(func, "the message must be its first parameter")
    for p in positional[1:]:
        if p.name not in INJECTED and p.default is inspect.Parameter.empty:
            raise HandlerSignatureError(
                func,
                f"parameter {p.name!r} cannot be supplied; only 'time' and 'agent' are "
                "injected after the message",
            )
    missing_kw = _required_kw_only(params)
    if missing_kw:
        raise HandlerSignatureError(
            func, f"keyword-only parameter(s) {missing_kw} cannot be supplied"
        )
    after = tuple(p.name for p in positional[1:])
    # By position only when the positional ones are all the handler takes of time/agent.
    injected = set(INJECTED)
    by_position = set(after) <= injected and not has_var_kw and names & injected <= set(after)
    if not by_position and any(p.kind is p.POSITIONAL_ONLY for p in positional[1:]):
        raise HandlerSignatureError(
            func, "'time' and 'agent' are passed by name here: they cannot be positional-only"
        )
    return HandlerSpec(
        "message",
        func,
        message_type=message_type,
        wants_time="time" in names or has_var_kw,
        wants_agent="agent" in names or has_var_kw,
        positional=after if by_position else None,
    )


def _mark(func: Any, spec: HandlerSpec) -> None:
    specs: list[HandlerSpec] = list(getattr(func, MARK, ()))
    specs.append(spec)
    setattr(func, MARK, specs)


def _check_types(types: tuple[type, ...]) -> None:
    if not types:
        raise TypeError("on() needs at least one message type")
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"on() takes message types, got {t!r}")


def on(*types: type) -> Callable[[F], F]:
    """Mark an ``async def`` method as the handler of messages of these types.

    Raises:
        HandlerSignatureError: the method cannot be called with (self, message) plus the
            injected ``time``/``agent`` (raised when the class body runs).
        TypeError: no type, or something that is not a type.
    """
    _check_types(types)

    def decorate(func: F) -> F:
        for t in types:
            _mark(func, validate_handler(func, "message", bound=False, message_type=t))
        return func

    return decorate


def on_connect(pattern: str = "*") -> Callable[[F], F]:
    """Mark a method called with ``(topic, agent)`` when a matching agent joins.

    `pattern` is ``"topic:role"``: ``topic`` matches the workspace, ``role`` the
    agent's role; ``"*"`` (or an empty part) matches anything.
    """

    def decorate(func: F) -> F:
        _mark(func, validate_handler(func, "connect", bound=False, pattern=pattern))
        return func

    return decorate


def on_disconnect(pattern: str = "*") -> Callable[[F], F]:
    """Mark a method called with ``(topic, agent)`` when a matching agent leaves."""

    def decorate(func: F) -> F:
        _mark(func, validate_handler(func, "disconnect", bound=False, pattern=pattern))
        return func

    return decorate


def on_run() -> Callable[[F], F]:
    """Mark the agent's main loop, started once it is connected and cancelled at stop."""

    def decorate(func: F) -> F:
        _mark(func, validate_handler(func, "run", bound=False))
        return func

    return decorate


def pattern_matches(pattern: str, topic: str, role: str) -> bool:
    """Whether ``"topic:role"`` `pattern` matches an agent of `role` in `topic`."""
    want_topic, _, want_role = pattern.partition(":")
    return want_topic in ("", "*", topic) and want_role in ("", "*", role)


class HandlerTable:
    """The handlers of one agent class (plus any registered on an instance)."""

    def __init__(self, specs: Iterable[HandlerSpec] = ()) -> None:
        self.by_type: dict[type, list[HandlerSpec]] = {}
        self.connect: list[HandlerSpec] = []
        self.disconnect: list[HandlerSpec] = []
        self.run: list[HandlerSpec] = []
        self._resolved: dict[type, tuple[HandlerSpec, ...]] = {}
        for spec in specs:
            self.add(spec)

    @classmethod
    def for_class(cls, owner: type) -> HandlerTable:
        """Collect the handlers of `owner` over its MRO, a subclass overriding by name."""
        by_name: dict[str, list[HandlerSpec]] = {}
        for klass in reversed(owner.__mro__):
            for attr, value in vars(klass).items():
                specs = getattr(value, MARK, None)
                if specs is not None:
                    by_name[attr] = list(specs)
                elif attr in by_name:
                    del by_name[attr]  # overridden by a plain method
        return cls(spec for specs in by_name.values() for spec in specs)

    def copy(self) -> HandlerTable:
        table = HandlerTable()
        table.by_type = {t: list(s) for t, s in self.by_type.items()}
        table.connect = list(self.connect)
        table.disconnect = list(self.disconnect)
        table.run = list(self.run)
        return table

    def add(self, spec: HandlerSpec) -> None:
        if spec.kind == "message":
            assert spec.message_type is not None
            self.by_type.setdefault(spec.message_type, []).append(spec)
            self._resolved.clear()
        else:
            getattr(self, spec.kind).append(spec)

    def message_types(self) -> list[type]:
        return list(self.by_type)

    def for_message(self, message_type: type) -> tuple[HandlerSpec, ...]:
        """Handlers for a message of `message_type`: those of the nearest class in its MRO."""
        found = self._resolved.get(message_type)
        if found is None:
            found = ()
            for klass in message_type.__mro__:
                specs = self.by_type.get(klass)
                if specs:
                    found = tuple(specs)
                    break
            self._resolved[message_type] = found
        return found
