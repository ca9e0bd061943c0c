"""Ceylon: a networked, peer-to-peer multi-agent runtime over TCP.

As a library it keeps its logging off (`logger.enable("ceylon")` turns it on), as loguru
recommends for libraries; the command line turns it on.
"""

from __future__ import annotations

from loguru import logger

from transport import ConnectionClosed, HandshakeError

from .base import Admin, BaseAgent, BasePlayGround, Worker, register
from .config import Settings
from .errors import (
    AgentLeftError,
    AgentNotFoundError,
    AskTimeout,
    CeylonError,
    EncodeError,
    HandlerSignatureError,
    NotConnectedError,
    PermissionDenied,
    PluginError,
    RemoteHandlerError,
    WorkersMissingError,
)
from .handlers import on, on_connect, on_disconnect, on_run
from .peer import AgentDetail, PeerMode

__all__ = [
    "Admin",
    "AgentDetail",
    "AgentLeftError",
    "AgentNotFoundError",
    "AskTimeout",
    "BaseAgent",
    "BasePlayGround",
    "CeylonError",
    "ConnectionClosed",
    "EncodeError",
    "HandlerSignatureError",
    "HandshakeError",
    "NotConnectedError",
    "PeerMode",
    "PermissionDenied",
    "PluginError",
    "RemoteHandlerError",
    "Settings",
    "Worker",
    "WorkersMissingError",
    "__version__",
    "on",
    "on_connect",
    "on_disconnect",
    "on_run",
    "register",
]

__version__ = "0.1.0"

logger.disable("ceylon")
