"""Handshake rules, sans-I/O: version and workspace checks, HMAC challenge-response.

The exchange, client C and server S, with a shared secret::

    C -> S  Hello(version, workspace, id, name, role, extra, nonce_c, key id)
    S -> C  Challenge(nonce_s, HMAC(secret, "server" + transcript))
    C -> S  Proof(HMAC(secret, "client" + transcript))
    S -> C  Welcome(server identity)        or Reject(reason) at any step

The transcript binds both fresh nonces and the client's claimed identity, so a proof
recorded on one connection is worthless on the next (the server's nonce differs), and
the server proves it knows the secret too. The secret itself never crosses the wire.
Without a secret the server answers Hello with Welcome directly.

A server may hold several secrets (one per token of a permissions file, a `Keyring`).
The client then names which one it proves it knows by its key id, a hash of the
secret (`key_id`), so the server can send the matching proof; the server's proof
already lets a client guess offline, the key id adds nothing to that.

The server proves itself before the client does, so any client may take a server proof
away and try passwords against it offline: the secret must be high-entropy (a random
token), not something a person would remember.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Final

import msgpack

from .errors import (
    AuthenticationError,
    HandshakeError,
    VersionMismatchError,
    WorkspaceMismatchError,
)
from .wire import PROTOCOL_VERSION, Hello, PeerInfo, encode_record

__all__ = [
    "HANDSHAKE_MAX_FRAME_SIZE",
    "KEY_ID_SIZE",
    "MAX_IDENTITY_LENGTH",
    "NONCE_SIZE",
    "check_hello",
    "check_identity",
    "Keyring",
    "client_proof",
    "key_id",
    "keyring",
    "new_nonce",
    "server_proof",
    "verify",
]

NONCE_SIZE: Final = 32
#: Longest id, name or role a client may claim.
MAX_IDENTITY_LENGTH: Final = 256
#: Largest frame accepted before the handshake completes.
HANDSHAKE_MAX_FRAME_SIZE: Final = 64 * 2**10
KEY_ID_SIZE: Final = 16

#: A server's secrets by key id (see `keyring`).
Keyring = Mapping[bytes, bytes]


def key_id(secret: bytes) -> bytes:
    """The name under which a client tells a server which secret it proves it knows."""
    return hashlib.sha256(b"ceylon-key-id\x00" + secret).digest()[:KEY_ID_SIZE]


def keyring(secrets: Iterable[bytes]) -> dict[bytes, bytes]:
    """`secrets` by key id.

    Raises:
        ValueError: a secret is empty, or two are the same.
    """
    ring: dict[bytes, bytes] = {}
    for secret in secrets:
        if not secret:
            raise ValueError("a token must not be empty")
        key = key_id(secret)
        if key in ring:
            raise ValueError("the same token is given twice")
        ring[key] = secret
    return ring


def new_nonce() -> bytes:
    """A fresh random nonce from the OS CSPRNG."""
    return secrets.token_bytes(NONCE_SIZE)


def _transcript(hello: Hello, server_nonce: bytes) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        [
            hello.version,
            hello.workspace,
            hello.id,
            hello.name,
            hello.role,
            hello.nonce,
            hello.key,
            server_nonce,
        ],
        use_bin_type=True,
    )


def _mac(secret: bytes, label: bytes, hello: Hello, server_nonce: bytes) -> bytes:
    return hmac.new(secret, label + _transcript(hello, server_nonce), hashlib.sha256).digest()


def server_proof(secret: bytes, hello: Hello, server_nonce: bytes) -> bytes:
    """What the server sends to show it knows `secret`."""
    return _mac(secret, b"ceylon-server\x00", hello, server_nonce)


def client_proof(secret: bytes, hello: Hello, server_nonce: bytes) -> bytes:
    """What the client sends to show it knows `secret`."""
    return _mac(secret, b"ceylon-client\x00", hello, server_nonce)


def verify(expected: bytes, received: bytes, who: str) -> None:
    """Compare a proof in constant time.

    Raises:
        AuthenticationError: the proofs differ.
    """
    if not hmac.compare_digest(expected, received):
        raise AuthenticationError(f"authentication failed: {who} proof does not match the token")


def _overlong_field(identity: PeerInfo | Hello) -> str | None:
    """What is wrong with an identity whose id, name or role is too long, or None."""
    for field in ("id", "name", "role"):
        if len(getattr(identity, field)) > MAX_IDENTITY_LENGTH:
            return f"the {field} is over {MAX_IDENTITY_LENGTH} characters"
    return None


def check_identity(identity: PeerInfo) -> None:
    """Check that this side's own identity fits the handshake's limits.

    Raises:
        ValueError: the id, name or role is over `MAX_IDENTITY_LENGTH` characters, or the
            identity (``extra`` included) does not fit a handshake frame.
    """
    overlong = _overlong_field(identity)
    if overlong is not None:
        raise ValueError(overlong)
    record = Hello(PROTOCOL_VERSION, "", identity.id, identity.name, identity.role,
                   identity.extra, bytes(NONCE_SIZE))  # fmt: skip
    size = len(encode_record(record)) + MAX_IDENTITY_LENGTH  # room for the workspace
    if size > HANDSHAKE_MAX_FRAME_SIZE:
        raise ValueError(
            f"identity of about {size} bytes does not fit a handshake frame "
            f"({HANDSHAKE_MAX_FRAME_SIZE} bytes): keep extra data small"
        )


def check_hello(hello: Hello, workspace: str) -> None:
    """Check what a server checks before authentication.

    Raises:
        VersionMismatchError: `hello.version` is not ours.
        WorkspaceMismatchError: `hello.workspace` is not `workspace`.
        AuthenticationError: the nonce is too short to be fresh.
        HandshakeError: the id, name or role is longer than `MAX_IDENTITY_LENGTH`.
    """
    if hello.version != PROTOCOL_VERSION:
        raise VersionMismatchError(PROTOCOL_VERSION, hello.version)
    if hello.workspace != workspace:
        raise WorkspaceMismatchError(workspace, hello.workspace)
    if len(hello.nonce) < NONCE_SIZE:
        raise AuthenticationError(
            f"client nonce of {len(hello.nonce)} bytes, expected {NONCE_SIZE}"
        )
    overlong = _overlong_field(hello)
    if overlong is not None:
        raise HandshakeError(overlong)
