"""Every exception the agent layer raises.

The tree::

    CeylonError
    ├── AgentNotFoundError        send_message to an unknown id or name    (.target)
    │   └── AgentLeftError        the asked agent left before it answered  (.target)
    ├── AskTimeout                ask() got no answer in time    (.target, .timeout)
    ├── RemoteHandlerError        the asked agent's handler failed
    │                                             (.target, .type_name, .message)
    ├── WorkersMissingError       play() deadline passed                   (.missing)
    ├── HandlerSignatureError     a bad @on/@on_connect/@on_run signature  (.handler)
    ├── PluginError               a plugin misconfigured or failed         (.plugin)
    ├── PermissionDenied          the playground's permissions file does not
    │                             allow what was asked (a query)           (.reason)
    ├── EncodeError               a message that cannot be encoded (also a
    │                             transport.EncodeError and a TypeError)
    └── NotConnectedError         the agent is not connected (yet, or any more)

The transport's `ConnectionClosed` and `HandshakeError` reach users unchanged (they are
re-exported by `ceylon`), never wrapped.
"""

from __future__ import annotations

from collections.abc import Iterable

import transport

__all__ = [
    "EncodeError",
    "AgentLeftError",
    "AgentNotFoundError",
    "AskTimeout",
    "CeylonError",
    "HandlerSignatureError",
    "NotConnectedError",
    "PermissionDenied",
    "PluginError",
    "RemoteHandlerError",
    "WorkersMissingError",
]


class CeylonError(Exception):
    """Root of every exception raised by `ceylon`."""


class AgentNotFoundError(CeylonError, LookupError):
    """No agent with this id or name is connected to the playground."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"no connected agent has the id or name {target!r}")


class AgentLeftError(AgentNotFoundError):
    """The agent asked left (or this agent lost its playground) before it answered."""

    def __init__(self, target: str) -> None:
        self.target = target
        LookupError.__init__(self, f"agent {target!r} left before it answered")


class AskTimeout(CeylonError, TimeoutError):
    """`ask()` got no reply within its timeout."""

    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        super().__init__(f"no reply from {target!r} within {timeout:g} s")


class RemoteHandlerError(CeylonError):
    """The asked agent could not answer: its handler raised, returned nothing, or it had
    no handler for the message (or could not decode it). Only the exception's type and
    message cross the wire, never a traceback or values."""

    def __init__(self, target: str, type_name: str, message: str) -> None:
        self.target = target
        self.type_name = type_name
        self.message = message
        super().__init__(f"{target!r} could not answer a {type_name}: {message}")


class WorkersMissingError(CeylonError, TimeoutError):
    """The deadline passed before every expected agent joined."""

    def __init__(self, missing: Iterable[str], timeout: float) -> None:
        self.missing = sorted(missing)
        self.timeout = timeout
        super().__init__(
            f"{len(self.missing)} agent(s) did not join within {timeout} s: "
            + ", ".join(self.missing)
        )


class HandlerSignatureError(CeylonError, TypeError):
    """A handler's signature does not fit its decorator; raised when the class is defined."""

    def __init__(self, handler: object, reason: str) -> None:
        self.handler = handler
        name = getattr(handler, "__qualname__", repr(handler))
        super().__init__(f"handler {name}: {reason}")


class PluginError(CeylonError):
    """A plugin is misconfigured or failed."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {reason}")


class PermissionDenied(CeylonError, PermissionError):
    """The playground refused a request: the agent's token does not grant it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConnectedError(CeylonError, RuntimeError):
    """The agent has no live link to its playground."""


class EncodeError(CeylonError, transport.EncodeError):
    """A message (or a reply) cannot be encoded: the error names the type, never values."""
