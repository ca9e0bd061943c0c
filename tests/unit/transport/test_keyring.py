"""A server holding several tokens: each client proves one, named by its key id."""

from __future__ import annotations

import msgpack
import pytest

from transport.errors import DecodeError
from transport.handshake import KEY_ID_SIZE, key_id, keyring
from transport.protocol import CLIENT, OPEN, PeerAuthenticated, Protocol
from transport.wire import PROTOCOL_VERSION, Hello, PeerInfo, decode_record, encode_record

from .test_protocol import Pair


def handshake(client_secret: bytes, server_secret: bytes | dict[bytes, bytes]) -> Pair:
    pair = Pair(client_token=client_secret, server_token=server_secret)
    pair.pump()
    return pair


def authenticated(pair: Pair) -> list[bytes]:
    return [e.key for e in pair.server_events if isinstance(e, PeerAuthenticated)]


def test_two_clients_prove_two_tokens_of_one_keyring() -> None:
    ring = keyring([b"alpha-token", b"beta-token"])
    for secret in (b"alpha-token", b"beta-token"):
        pair = handshake(secret, ring)
        assert pair.server.state is OPEN and pair.client.state is OPEN
        assert authenticated(pair) == [key_id(secret)] and pair.server.key == key_id(secret)


def test_an_unknown_token_is_refused() -> None:
    pair = handshake(b"gamma-token", keyring([b"alpha-token", b"beta-token"]))
    assert pair.closed(pair.server_events).reason == "authentication failed: unknown token"
    assert authenticated(pair) == []


def test_a_single_secret_accepts_any_key_id_but_still_needs_the_proof() -> None:
    assert handshake(b"alpha-token", b"alpha-token").server.state is OPEN
    pair = handshake(b"wrong-token", b"alpha-token")
    assert "authentication failed" in pair.closed(pair.client_events).reason
    assert authenticated(pair) == []


def test_a_client_proves_one_secret() -> None:
    with pytest.raises(TypeError):
        Protocol(CLIENT, PeerInfo("c", "client", "", {}), secret={b"k": b"v"})


def test_key_ids_and_keyrings() -> None:
    assert len(key_id(b"x")) == KEY_ID_SIZE and key_id(b"x") == key_id(b"x")
    assert key_id(b"x") != key_id(b"y")
    with pytest.raises(ValueError, match="empty"):
        keyring([b""])
    with pytest.raises(ValueError, match="twice"):
        keyring([b"a", b"a"])


def test_a_hello_without_a_key_still_decodes() -> None:
    hello = Hello(PROTOCOL_VERSION, "ws", "i", "n", "r", {}, bytes(32))
    seven = msgpack.packb([1, *hello[:7]], use_bin_type=True)  # as sent before key ids
    assert decode_record(seven) == hello and hello.key == b""
    assert decode_record(encode_record(hello._replace(key=b"k"))) == hello._replace(key=b"k")
    for fields in (list(hello[:6]), [*hello, b"more"]):
        with pytest.raises(DecodeError):
            decode_record(msgpack.packb([1, *fields], use_bin_type=True))
