"""A server holding several tokens (a keyring): each client proves one, named by its key id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import msgpack
import pytest

from transport import handshake
from transport.errors import AuthenticationError, DecodeError
from transport.framing import FrameDecoder, encode_frame
from transport.handshake import KEY_ID_SIZE, key_id, keyring
from transport.protocol import (
    CLIENT,
    CLOSED,
    OPEN,
    SERVER,
    Closed,
    Event,
    HandshakeComplete,
    PeerAuthenticated,
    Protocol,
)
from transport.wire import (
    KIND_HELLO,
    PROTOCOL_VERSION,
    Challenge,
    Hello,
    PeerInfo,
    Proof,
    Record,
    Reject,
    Welcome,
    decode_record,
    encode_record,
)

ALPHA = b"alpha-token-0123456789"
BETA = b"beta-token-0123456789"
GAMMA = b"gamma-token-0123456789"

CLIENT_ID = PeerInfo("c-id", "worker-1", "worker", {"zone": "a"})
SERVER_ID = PeerInfo("s-id", "playground", "admin", {})


def nonces(prefix: bytes) -> Iterator[bytes]:
    n = 0
    while True:
        n += 1
        yield prefix + n.to_bytes(4, "big") + bytes(handshake.NONCE_SIZE - len(prefix) - 4)


def records(data: bytes) -> list[Record]:
    """The control records in `data`, a run of frames."""
    return [decode_record(payload) for payload in FrameDecoder().feed_frames(data)]


def closed(events: list[Event]) -> Closed:
    found = [e for e in events if isinstance(e, Closed)]
    assert len(found) == 1, events
    return found[0]


def authenticated(events: list[Event]) -> list[PeerAuthenticated]:
    return [e for e in events if isinstance(e, PeerAuthenticated)]


class Pair:
    """A client and a server Protocol, the output of each fed to the other in memory."""

    def __init__(
        self,
        client_secret: bytes | None,
        server_secret: bytes | handshake.Keyring | None,
        *,
        identity: PeerInfo = CLIENT_ID,
    ) -> None:
        self.client = Protocol(
            CLIENT, identity, secret=client_secret, nonce_factory=nonces(b"C").__next__
        )
        self.server = Protocol(
            SERVER, SERVER_ID, secret=server_secret, nonce_factory=nonces(b"S").__next__
        )
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.pump()

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            data = self.client.data_to_send()
            if data:
                self.server.receive_data(data)
                moved = True
            for event in self.server.events_received():
                self.server_events.append(event)
                if isinstance(event, PeerAuthenticated):
                    self.server.accept()
                    moved = True
            data = self.server.data_to_send()
            if data:
                self.client.receive_data(data)
                moved = True
            self.client_events.extend(self.client.events_received())
            if not moved:
                return
        raise AssertionError("the pair never went quiet")

    @property
    def open(self) -> bool:
        return self.client.state is OPEN and self.server.state is OPEN


def hello(key: bytes = b"", nonce: bytes = bytes(range(32))) -> Hello:
    return Hello(PROTOCOL_VERSION, "default", "m-id", "mallory", "worker", {}, nonce, key)


def challenge_for(server: Protocol, record: Hello) -> Challenge:
    """Send `record` to `server` and return the Challenge it answers with."""
    server.receive_data(encode_frame(encode_record(record)))
    (answer,) = records(server.data_to_send())
    assert isinstance(answer, Challenge), answer
    return answer


# -- key ids and keyrings -------------------------------------------------------------


def test_a_key_id_is_sixteen_bytes() -> None:
    assert KEY_ID_SIZE == 16
    for secret in (b"x", ALPHA, b"\x00" * 1000):
        assert isinstance(key_id(secret), bytes) and len(key_id(secret)) == KEY_ID_SIZE


def test_a_key_id_is_deterministic() -> None:
    assert key_id(ALPHA) == key_id(bytes(ALPHA)) == key_id(b"alpha-" + b"token-0123456789")


def test_key_ids_differ_per_secret() -> None:
    secrets = [ALPHA, BETA, GAMMA, b"a", b"b", b"A", ALPHA + b"\x00"]
    assert len({key_id(s) for s in secrets}) == len(secrets)


def test_a_key_id_is_a_labelled_sha256_prefix() -> None:
    # Both ends must derive it alike: pinned so a change is a deliberate wire change.
    expected = hashlib.sha256(b"ceylon-key-id\x00" + ALPHA).digest()[:KEY_ID_SIZE]
    assert key_id(ALPHA) == expected
    assert key_id(ALPHA) != hashlib.sha256(ALPHA).digest()[:KEY_ID_SIZE]


def test_keyring_holds_each_secret_by_its_key_id() -> None:
    ring = keyring([ALPHA, BETA])
    assert ring == {key_id(ALPHA): ALPHA, key_id(BETA): BETA}
    assert list(ring) == [key_id(ALPHA), key_id(BETA)]  # in the order given
    assert keyring(iter([GAMMA])) == {key_id(GAMMA): GAMMA}  # any iterable
    assert keyring([]) == {}


def test_keyring_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        keyring([ALPHA, b""])


def test_keyring_refuses_the_same_secret_twice() -> None:
    with pytest.raises(ValueError, match="the same token is given twice"):
        keyring([ALPHA, BETA, ALPHA])


# -- a keyring server -----------------------------------------------------------------


def test_two_clients_with_different_tokens_authenticate_against_one_keyring() -> None:
    ring = keyring([ALPHA, BETA, GAMMA])
    for secret in (ALPHA, BETA):
        pair = Pair(secret, ring)
        assert pair.open
        (event,) = authenticated(pair.server_events)
        assert event.key == key_id(secret)
        assert event.peer == CLIENT_ID
        assert pair.server.key == key_id(secret) and pair.client.key == key_id(secret)
        assert [type(e) for e in pair.client_events] == [HandshakeComplete]


def test_two_connections_sharing_one_keyring_mapping_report_their_own_keys() -> None:
    # The same mapping object shared by two server connections, as a playground does.
    ring = keyring([ALPHA, BETA])
    first, second = Pair(ALPHA, ring), Pair(BETA, ring)
    assert first.open and second.open
    assert [e.key for e in authenticated(first.server_events)] == [key_id(ALPHA)]
    assert [e.key for e in authenticated(second.server_events)] == [key_id(BETA)]


def test_the_client_hello_carries_the_key_id_of_its_secret() -> None:
    client = Protocol(CLIENT, CLIENT_ID, secret=ALPHA)
    (sent,) = records(client.data_to_send())
    assert isinstance(sent, Hello)
    assert sent.key == key_id(ALPHA) == client.key
    assert (sent.id, sent.name, sent.role) == ("c-id", "worker-1", "worker")


def test_a_client_without_a_secret_sends_no_key_id() -> None:
    for secret in (None, b""):
        client = Protocol(CLIENT, CLIENT_ID, secret=secret)
        (sent,) = records(client.data_to_send())
        assert isinstance(sent, Hello) and sent.key == b"" and client.key == b""


def test_an_unknown_token_is_refused() -> None:
    pair = Pair(GAMMA, keyring([ALPHA, BETA]))
    assert pair.client.state is CLOSED and pair.server.state is CLOSED
    assert authenticated(pair.server_events) == []
    server_closed = closed(pair.server_events)
    assert server_closed.reason == "authentication failed: unknown token"
    assert isinstance(server_closed.error, AuthenticationError)
    client_closed = closed(pair.client_events)
    assert client_closed.by_peer and client_closed.reason == "authentication failed: unknown token"


def test_the_server_refuses_an_unknown_key_id_before_challenging() -> None:
    server = Protocol(SERVER, SERVER_ID, secret=keyring([ALPHA, BETA]))
    server.receive_data(encode_frame(encode_record(hello(key_id(GAMMA)))))
    # No Challenge: the server proves nothing about any of its tokens to a stranger.
    assert records(server.data_to_send()) == [Reject("authentication failed: unknown token")]
    assert server.state is CLOSED and server.key == b""
    assert authenticated(server.events_received()) == []


def test_a_client_without_a_token_is_refused_by_a_keyring_server() -> None:
    pair = Pair(None, keyring([ALPHA, BETA]))
    assert not pair.open
    assert closed(pair.server_events).reason == "authentication failed: unknown token"


def test_a_forged_key_id_without_its_token_fails_authentication() -> None:
    # Mallory holds GAMMA but names ALPHA's key id: the server challenges under ALPHA,
    # and a proof made with any other secret does not match.
    server = Protocol(
        SERVER, SERVER_ID, secret=keyring([ALPHA, BETA]), nonce_factory=nonces(b"S").__next__
    )
    forged = hello(key_id(ALPHA))
    challenge = challenge_for(server, forged)
    assert challenge.proof == handshake.server_proof(ALPHA, forged, challenge.nonce)
    proof = handshake.client_proof(GAMMA, forged, challenge.nonce)
    server.receive_data(encode_frame(encode_record(Proof(proof))))
    (answer,) = records(server.data_to_send())
    assert answer == Reject("authentication failed: client proof does not match the token")
    events = server.events_received()
    assert authenticated(events) == [] and server.state is CLOSED
    assert isinstance(closed(events).error, AuthenticationError)


def test_the_right_proof_for_a_named_key_id_authenticates() -> None:
    # The same exchange done by hand with the token: the server accepts it.
    server = Protocol(
        SERVER, SERVER_ID, secret=keyring([ALPHA, BETA]), nonce_factory=nonces(b"S").__next__
    )
    record = hello(key_id(BETA))
    challenge = challenge_for(server, record)
    proof = handshake.client_proof(BETA, record, challenge.nonce)
    server.receive_data(encode_frame(encode_record(Proof(proof))))
    (event,) = authenticated(server.events_received())
    assert event.key == key_id(BETA) and event.peer.name == "mallory"
    server.accept()
    assert isinstance(records(server.data_to_send())[-1], Welcome) and server.state is OPEN


def test_a_proof_for_another_key_id_of_the_ring_fails() -> None:
    # Knowing BETA does not let a client pass as ALPHA's holder.
    server = Protocol(
        SERVER, SERVER_ID, secret=keyring([ALPHA, BETA]), nonce_factory=nonces(b"S").__next__
    )
    record = hello(key_id(ALPHA))
    challenge = challenge_for(server, record)
    server.receive_data(
        encode_frame(encode_record(Proof(handshake.client_proof(BETA, record, challenge.nonce))))
    )
    assert authenticated(server.events_received()) == [] and server.state is CLOSED


def test_a_key_id_rewritten_in_transit_fails() -> None:
    # A man in the middle turning ALPHA's key id into BETA's: the server then proves BETA,
    # which the ALPHA client cannot check, and the key id is in the transcript anyway.
    ring = keyring([ALPHA, BETA])
    client = Protocol(CLIENT, CLIENT_ID, secret=ALPHA, nonce_factory=nonces(b"C").__next__)
    server = Protocol(SERVER, SERVER_ID, secret=ring, nonce_factory=nonces(b"S").__next__)
    (sent,) = records(client.data_to_send())
    assert isinstance(sent, Hello)
    server.receive_data(encode_frame(encode_record(sent._replace(key=key_id(BETA)))))
    client.receive_data(server.data_to_send())
    reason = closed(client.events_received()).reason
    assert reason == "authentication failed: server proof does not match the token"
    assert client.state is CLOSED


def test_a_server_with_a_single_secret_accepts_whatever_key_id() -> None:
    for key in (b"", key_id(BETA), b"\x01" * KEY_ID_SIZE, b"not even sixteen"):
        server = Protocol(SERVER, SERVER_ID, secret=ALPHA, nonce_factory=nonces(b"S").__next__)
        record = hello(key)
        challenge = challenge_for(server, record)
        assert challenge.proof == handshake.server_proof(ALPHA, record, challenge.nonce)
        proof = handshake.client_proof(ALPHA, record, challenge.nonce)
        server.receive_data(encode_frame(encode_record(Proof(proof))))
        (event,) = authenticated(server.events_received())
        # The key id reported is the one of the secret proved, not the one named.
        assert event.key == key_id(ALPHA) == server.key, key


def test_a_keyring_of_one_secret_accepts_whatever_key_id() -> None:
    server = Protocol(
        SERVER, SERVER_ID, secret=keyring([ALPHA]), nonce_factory=nonces(b"S").__next__
    )
    record = hello(key_id(GAMMA))
    challenge = challenge_for(server, record)
    server.receive_data(
        encode_frame(encode_record(Proof(handshake.client_proof(ALPHA, record, challenge.nonce))))
    )
    (event,) = authenticated(server.events_received())
    assert event.key == key_id(ALPHA)


def test_a_single_secret_server_still_needs_the_proof() -> None:
    pair = Pair(ALPHA, ALPHA)
    assert pair.open
    assert [e.key for e in authenticated(pair.server_events)] == [key_id(ALPHA)]
    pair = Pair(GAMMA, ALPHA)
    assert not pair.open and authenticated(pair.server_events) == []
    assert "authentication failed" in closed(pair.client_events).reason


def test_without_a_secret_the_key_is_empty() -> None:
    pair = Pair(None, None)
    assert pair.open
    (event,) = authenticated(pair.server_events)
    assert event.key == b"" and pair.server.key == b""


def test_peer_authenticated_key_defaults_to_empty() -> None:
    assert PeerAuthenticated(CLIENT_ID).key == b""
    assert PeerAuthenticated(CLIENT_ID, b"k").key == b"k"


def test_a_client_given_a_keyring_raises_type_error() -> None:
    with pytest.raises(TypeError, match="pass bytes, not a keyring"):
        Protocol(CLIENT, CLIENT_ID, secret=keyring([ALPHA, BETA]))
    with pytest.raises(TypeError):
        Protocol(CLIENT, CLIENT_ID, secret={key_id(ALPHA): ALPHA})


def test_a_hello_without_a_key_authenticates_against_a_single_secret() -> None:
    # A client from before key ids sends a Hello of seven fields.
    server = Protocol(SERVER, SERVER_ID, secret=ALPHA, nonce_factory=nonces(b"S").__next__)
    old = hello()
    server.receive_data(encode_frame(msgpack.packb([KIND_HELLO, *old[:7]], use_bin_type=True)))
    (challenge,) = records(server.data_to_send())
    assert isinstance(challenge, Challenge)
    proof = handshake.client_proof(ALPHA, old, challenge.nonce)
    server.receive_data(encode_frame(encode_record(Proof(proof))))
    (event,) = authenticated(server.events_received())
    assert event.key == key_id(ALPHA)


# -- the Hello record on the wire -----------------------------------------------------


def packed_hello(*fields: object) -> bytes:
    return msgpack.packb([KIND_HELLO, *fields], use_bin_type=True)  # type: ignore[no-any-return]


HELLO = Hello(PROTOCOL_VERSION, "ws", "i", "n", "r", {"x": 1}, bytes(32), key_id(ALPHA))


def test_a_hello_of_eight_fields_decodes_with_its_key() -> None:
    assert len(HELLO) == 8
    assert decode_record(packed_hello(*HELLO)) == HELLO
    assert decode_record(encode_record(HELLO)) == HELLO


def test_a_hello_of_seven_fields_decodes_with_an_empty_key() -> None:
    decoded = decode_record(packed_hello(*HELLO[:7]))
    assert isinstance(decoded, Hello)
    assert decoded.key == b"" and decoded == HELLO._replace(key=b"")


@pytest.mark.parametrize("count", [0, 5, 6])
def test_a_hello_of_too_few_fields_is_a_decode_error(count: int) -> None:
    with pytest.raises(DecodeError):
        decode_record(packed_hello(*HELLO[:count]))


def test_a_hello_of_nine_fields_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_record(packed_hello(*HELLO, b"more"))


def test_a_hello_key_that_is_not_bytes_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="key"):
        decode_record(packed_hello(*HELLO[:7], "a string"))


def test_an_empty_keyring_is_refused_rather_than_letting_everyone_in() -> None:
    with pytest.raises(ValueError, match="empty keyring"):
        Protocol(SERVER, PeerInfo("s", "s", "", {}), secret={})
