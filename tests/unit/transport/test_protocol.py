"""The connection state machine and handshake, in pairs, without sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import msgpack
import pytest

from transport import handshake
from transport.codec import Codec, TypeRegistry
from transport.errors import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    FrameSizeError,
    HandshakeError,
    InvalidStateError,
    VersionMismatchError,
    WorkspaceMismatchError,
)
from transport.framing import encode_frame
from transport.protocol import (
    CLIENT,
    CLOSED,
    HANDSHAKE,
    HANDSHAKE_MAX_FRAME_SIZE,
    OPEN,
    SERVER,
    Closed,
    Event,
    FrameDropped,
    HandshakeComplete,
    PeerAuthenticated,
    PongReceived,
    Protocol,
)
from transport.wire import (
    PROTOCOL_VERSION,
    Challenge,
    Envelope,
    Goodbye,
    Hello,
    MessageGroup,
    PeerInfo,
    Ping,
    Proof,
    Reject,
    Welcome,
    decode_record,
    encode_record,
    messages_prefix,
)

CLIENT_ID = PeerInfo("c-id", "worker-1", "worker", {"zone": "a"})
SERVER_ID = PeerInfo("s-id", "playground", "admin", {})


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Label:
    text: str


def nonces(prefix: bytes) -> Iterator[bytes]:
    n = 0
    while True:
        n += 1
        yield prefix + n.to_bytes(4, "big") + bytes(handshake.NONCE_SIZE - len(prefix) - 4)


class Pair:
    """A client and a server Protocol wired together in memory (h11's ConnectionPair)."""

    def __init__(
        self,
        *,
        client_token: bytes | None = None,
        server_token: bytes | None = None,
        client_workspace: str = "default",
        server_workspace: str = "default",
        auto_accept: bool = True,
    ) -> None:
        self.client = Protocol(
            CLIENT,
            CLIENT_ID,
            workspace=client_workspace,
            secret=client_token,
            nonce_factory=nonces(b"C").__next__,
        )
        self.server = Protocol(
            SERVER,
            SERVER_ID,
            workspace=server_workspace,
            secret=server_token,
            nonce_factory=nonces(b"S").__next__,
        )
        self.auto_accept = auto_accept
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.client_messages: list[MessageGroup] = []
        self.server_messages: list[MessageGroup] = []
        self.wire: list[tuple[str, bytes]] = []  # (direction, frame bytes) as sent

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            data = self.client.data_to_send()
            if data:
                self.wire.append(("c>s", data))
                self.server.receive_data(data)
                moved = True
            self.server_messages.extend(self.server.messages_received())
            for event in self.server.events_received():
                self.server_events.append(event)
                if isinstance(event, PeerAuthenticated) and self.auto_accept:
                    self.server.accept()
                    moved = True
            data = self.server.data_to_send()
            if data:
                self.wire.append(("s>c", data))
                self.client.receive_data(data)
                moved = True
            self.client_messages.extend(self.client.messages_received())
            self.client_events.extend(self.client.events_received())
            if not moved:
                return
        raise AssertionError("the pair never went quiet")

    def closed(self, events: list[Event]) -> Closed:
        found = [e for e in events if isinstance(e, Closed)]
        assert len(found) == 1, events
        return found[0]


def open_pair(**kwargs: object) -> Pair:
    pair = Pair(**kwargs)  # type: ignore[arg-type]
    pair.pump()
    assert pair.client.state is OPEN and pair.server.state is OPEN
    return pair


def test_handshake_without_token() -> None:
    pair = open_pair()
    assert pair.client_events == [HandshakeComplete(SERVER_ID)]
    assert pair.server_events == [PeerAuthenticated(CLIENT_ID), HandshakeComplete(CLIENT_ID)]
    assert pair.client.peer == SERVER_ID and pair.server.peer == CLIENT_ID


def test_handshake_with_good_token_and_the_secret_never_crosses_the_wire() -> None:
    pair = open_pair(client_token=b"s3cret-token", server_token=b"s3cret-token")
    kinds = [type(decode_record(frame[4:])) for _, frame in pair.wire if frame]
    assert Challenge in kinds and Proof in kinds
    assert all(b"s3cret-token" not in frame for _, frame in pair.wire)


def test_bad_token_is_refused_with_the_reason_on_both_sides() -> None:
    pair = Pair(client_token=b"wrong", server_token=b"right")
    pair.pump()
    # The client checks the server's proof first, refuses it and says why.
    client_closed = pair.closed(pair.client_events)
    server_closed = pair.closed(pair.server_events)
    assert isinstance(client_closed.error, AuthenticationError)
    assert "authentication failed" in client_closed.reason
    assert server_closed.by_peer and "authentication failed" in server_closed.reason
    assert pair.client.state is CLOSED and pair.server.state is CLOSED


def test_bad_client_proof_is_rejected_by_the_server() -> None:
    server = Protocol(SERVER, SERVER_ID, secret=b"right", nonce_factory=nonces(b"S").__next__)
    hello = Hello(PROTOCOL_VERSION, "default", "x", "mallory", "r", {}, bytes(32))
    server.receive_data(encode_frame(encode_record(hello)))
    challenge = decode_record(server.data_to_send()[4:])
    assert isinstance(challenge, Challenge)
    server.receive_data(encode_frame(encode_record(Proof(b"\x00" * 32))))
    reject = decode_record(server.data_to_send()[4:])
    assert isinstance(reject, Reject) and "authentication failed" in reject.reason
    (closed,) = [e for e in server.events_received() if isinstance(e, Closed)]
    assert isinstance(closed.error, AuthenticationError)


def test_replayed_proof_is_refused() -> None:
    # Record a successful handshake, then replay the client's frames to a new server.
    pair = open_pair(client_token=b"tok", server_token=b"tok")
    recorded = [frame for direction, frame in pair.wire if direction == "c>s"]
    server = Protocol(SERVER, SERVER_ID, secret=b"tok", nonce_factory=nonces(b"X").__next__)
    for frame in recorded:
        server.receive_data(frame)
    events = server.events_received()
    assert not any(isinstance(e, PeerAuthenticated) for e in events)
    (closed,) = [e for e in events if isinstance(e, Closed)]
    assert isinstance(closed.error, AuthenticationError)
    answers = [decode_record(p) for p in split_frames(server.data_to_send())]
    assert isinstance(answers[-1], Reject)


def test_version_mismatch_is_refused_with_its_reason() -> None:
    server = Protocol(SERVER, SERVER_ID)
    newer = msgpack.packb([1, PROTOCOL_VERSION + 1, "default", "a new shape"])
    server.receive_data(encode_frame(newer))
    (closed,) = [e for e in server.events_received() if isinstance(e, Closed)]
    assert isinstance(closed.error, VersionMismatchError)
    reject = decode_record(server.data_to_send()[4:])
    assert isinstance(reject, Reject)
    assert f"protocol version {PROTOCOL_VERSION + 1} is not supported" in reject.reason


def test_version_mismatch_in_a_well_formed_hello() -> None:
    server = Protocol(SERVER, SERVER_ID)
    hello = Hello(99, "default", "x", "n", "r", {}, bytes(32))
    server.receive_data(encode_frame(encode_record(hello)))
    (closed,) = [e for e in server.events_received() if isinstance(e, Closed)]
    assert isinstance(closed.error, VersionMismatchError)
    assert closed.error.remote == 99


def test_workspace_mismatch_is_refused_on_both_sides() -> None:
    pair = Pair(client_workspace="blue", server_workspace="green")
    pair.pump()
    server_closed = pair.closed(pair.server_events)
    client_closed = pair.closed(pair.client_events)
    assert isinstance(server_closed.error, WorkspaceMismatchError)
    assert "workspace 'blue' does not match this workspace 'green'" in client_closed.reason
    assert isinstance(client_closed.error, HandshakeError) and client_closed.by_peer


def test_client_without_token_against_a_server_with_one() -> None:
    pair = Pair(server_token=b"tok")
    pair.pump()
    assert "requires a token" in pair.closed(pair.client_events).reason
    assert "requires a token" in pair.closed(pair.server_events).reason


def test_client_with_token_refuses_a_server_that_asks_for_none() -> None:
    pair = Pair(client_token=b"tok")
    pair.pump()
    client_closed = pair.closed(pair.client_events)
    assert isinstance(client_closed.error, AuthenticationError)
    assert "did not prove" in client_closed.reason
    assert pair.server.state is CLOSED


def test_server_owner_can_reject_an_authenticated_client() -> None:
    pair = Pair(auto_accept=False)
    pair.pump()
    assert pair.server_events == [PeerAuthenticated(CLIENT_ID)]
    pair.server.reject("name 'worker-1' is already taken")
    pair.pump()
    closed = pair.closed(pair.client_events)
    assert closed.reason == "name 'worker-1' is already taken"
    assert isinstance(closed.error, HandshakeError)


def test_short_nonce_is_refused() -> None:
    server = Protocol(SERVER, SERVER_ID, secret=b"tok")
    hello = Hello(PROTOCOL_VERSION, "default", "x", "n", "r", {}, b"\x00")
    server.receive_data(encode_frame(encode_record(hello)))
    (closed,) = [e for e in server.events_received() if isinstance(e, Closed)]
    assert isinstance(closed.error, AuthenticationError)


def test_a_large_frame_before_the_handshake_is_refused_and_allowed_after() -> None:
    server = Protocol(SERVER, SERVER_ID)
    server.receive_data((HANDSHAKE_MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.error, HandshakeError)
    assert isinstance(closed.error.__cause__, FrameSizeError)

    pair = open_pair()
    big = msgpack.packb(b"x" * (2 * HANDSHAKE_MAX_FRAME_SIZE))
    pair.client.send_message("a", None, "T", big)
    pair.server.send_message("b", None, "T", big)
    pair.pump()
    assert [len(e.body) for e in envelopes(pair.server_messages)] == [2 * HANDSHAKE_MAX_FRAME_SIZE]
    assert [len(e.body) for e in envelopes(pair.client_messages)] == [2 * HANDSHAKE_MAX_FRAME_SIZE]


def test_a_large_message_in_the_same_read_as_the_welcome_is_read() -> None:
    client = Protocol(CLIENT, CLIENT_ID)
    server = Protocol(SERVER, SERVER_ID)
    server.receive_data(client.data_to_send())
    server.events_received()
    server.accept()
    server.send_message("s", None, "T", msgpack.packb(b"y" * (2 * HANDSHAKE_MAX_FRAME_SIZE)))
    client.receive_data(server.data_to_send())  # Welcome and the big frame together
    assert client.state is OPEN and client.closed is None
    (envelope,) = envelopes(client.messages_received())
    assert len(envelope.body) == 2 * HANDSHAKE_MAX_FRAME_SIZE


def test_handshake_frames_construct_no_application_types() -> None:
    codec = Codec(TypeRegistry())
    codec.registry.register(Point)
    tagged = msgpack.unpackb(codec.pack(Point(1, 2)))  # a Point, as an ext on the wire
    assert isinstance(tagged, msgpack.ExtType)
    hello = Hello(PROTOCOL_VERSION, "default", "x", "n", "r", {"p": tagged}, bytes(32))
    server = Protocol(SERVER, SERVER_ID, codec=codec)
    server.receive_data(encode_frame(encode_record(hello)))
    # Handshake data is plain msgpack: an extension value refuses the join.
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.error, HandshakeError)
    assert "extension values are not accepted" in closed.reason


@pytest.mark.parametrize("field", ["id", "name", "role"])
def test_overlong_identities_are_refused(field: str) -> None:
    values = {"id": "x", "name": "n", "role": "r", field: "z" * (handshake.MAX_IDENTITY_LENGTH + 1)}
    hello = Hello(
        PROTOCOL_VERSION, "default", values["id"], values["name"], values["role"], {}, bytes(32)
    )
    server = Protocol(SERVER, SERVER_ID)
    server.receive_data(encode_frame(encode_record(hello)))
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and f"the {field} is over" in closed.reason


def test_garbage_during_handshake_closes_with_a_reason() -> None:
    server = Protocol(SERVER, SERVER_ID)
    server.receive_data(encode_frame(b"\xc1garbage"))
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.error, HandshakeError)
    assert isinstance(decode_record(server.data_to_send()[4:]), Reject)


def envelopes(groups: list[MessageGroup]) -> list[Envelope]:
    """The messages of `groups`, their bodies unpacked (the transport leaves them bytes)."""
    return [e._replace(body=msgpack.unpackb(e.body)) for g in groups for e in g.envelopes()]


def test_messages_before_the_handshake_are_refused() -> None:
    server = Protocol(SERVER, SERVER_ID)
    payload = messages_prefix("x", None, 1) + msgpack.packb("T") + msgpack.packb(1)
    server.receive_data(encode_frame(payload))
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and "bad handshake frame" in closed.reason
    assert server.messages_received() == []


def test_messages_flow_both_ways_in_order() -> None:
    pair = open_pair()
    for i in range(5):
        pair.client.send_message("worker-1", None, "T", msgpack.packb(i))
        pair.server.send_message("playground", "worker-1", "U", msgpack.packb([i]))
    pair.pump()
    got = envelopes(pair.server_messages)
    assert [e.body for e in got] == list(range(5))
    assert got[0] == Envelope("worker-1", None, "T", 0)
    back = envelopes(pair.client_messages)
    assert [(e.target, e.tag, e.body) for e in back] == [("worker-1", "U", [i]) for i in range(5)]


def test_consecutive_messages_share_a_frame_and_keep_their_order() -> None:
    pair = open_pair()
    pair.client.send_message("a", None, "T", msgpack.packb(1))
    pair.client.send_message("a", None, "T", msgpack.packb(2))
    pair.client.send_message("a", "b", "T", msgpack.packb(3))  # new target: new group
    pair.client.send_ping(9)  # a control record seals the group before it
    pair.client.send_message("a", "b", "T", msgpack.packb(4))
    data = pair.client.data_to_send()
    assert len(split_frames(data)) == 4
    pair.server.receive_data(data)
    groups = pair.server.messages_received()
    assert [(g.target, g.count) for g in groups] == [(None, 2), ("b", 1), ("b", 1)]
    assert [msgpack.unpackb(body) for g in groups for _, body in g.pairs()] == [1, 2, 3, 4]


def test_routes_keep_one_order_across_targets_and_group_by_route() -> None:
    pair = open_pair()
    client = pair.client
    to_b, to_c = client.route("a", "b"), client.route("a", "c")
    assert client.route("a", "b") is to_b  # one route per pair
    for i in range(3):
        to_b.send(Point(i, 0))
    to_c.send(Point(3, 0))
    client.send_message("a", "b", "T", msgpack.packb(4))  # the general way joins in turn
    to_b.send(Point(5, 0))
    data = client.data_to_send()
    pair.server.receive_data(data)
    groups = pair.server.messages_received()
    assert [(g.sender, g.target, g.count) for g in groups] == [
        ("a", "b", 3),
        ("a", "c", 1),
        ("a", "b", 2),
    ]
    tags = [tag for g in groups for tag, _ in g.pairs()]
    assert tags[4] == "T" and tags.count(client.codec.registry.tag_of(Point)) == 5
    sent = [msgpack.unpackb(b) for g in groups for t, b in g.pairs() if t != "T"]
    assert [m["x"] for m in sent] == [0, 1, 2, 3, 5]


def test_a_route_cues_its_adapter_when_the_queue_starts_and_when_it_is_full() -> None:
    pair = open_pair()
    client = pair.client
    cues: list[int] = []
    client.on_queued = lambda: cues.append(client.bytes_pending)
    client.flush_bytes = 1000
    route = client.route("a", "b")
    pending = []
    for i in range(200):
        route.send(Point(i, i))
        pending.append(client.bytes_pending)
    # the first message, then every one that leaves flush_bytes or more waiting (this
    # adapter takes nothing)
    assert cues == [pending[0]] + [n for n in pending[1:] if n >= 1000]
    assert len(cues) > 1
    client.data_to_send()
    assert client.bytes_pending == 0
    route.send(Point(0, 0))  # the queue starts again
    assert cues[-1] == client.bytes_pending < 1000


def test_a_route_sends_bodies_of_every_size_each_way_it_can() -> None:
    pair = open_pair()
    route = pair.client.route("a", "b")
    sizes = [0, 200, 250, 251, 300, 70_000, 10, 300]
    for n in sizes:
        route.send(Label("x" * n))  # alone in the queue: the adapter is cued
        route.send(Label("y" * n))  # joining it
        pair.server.receive_data(pair.client.data_to_send())
    got = [msgpack.unpackb(b) for g in pair.server.messages_received() for _, b in g.pairs()]
    assert [m["text"] for m in got] == [c * n for n in sizes for c in "xy"]


def test_a_route_says_what_the_adapter_set_for_writing_paused() -> None:
    pair = open_pair()
    route = pair.client.route("a", "b")
    assert route.send(Point(1, 2)) is False
    pair.client.writing_paused = True
    assert route.send(Point(1, 2)) is True


def test_a_route_refuses_before_the_handshake_and_after_close() -> None:
    client = Protocol(CLIENT, CLIENT_ID)
    route = client.route("a", "b")
    with pytest.raises(InvalidStateError):
        route.send(Point(1, 2))
    pair = open_pair()
    route = pair.client.route("a", "b")
    route.send(Point(1, 2))
    pair.client.close("bye")
    with pytest.raises(ConnectionClosedOK):
        route.send(Point(1, 2))
    with pytest.raises(ConnectionClosedOK):
        route.send(Point(1, 2))  # the fast way refuses too, once the type is known


def open_small(max_frame_size: int) -> tuple[Protocol, Protocol]:
    """A client and a server with a small frame limit, through the handshake."""
    client = Protocol(CLIENT, CLIENT_ID, max_frame_size=max_frame_size)
    server = Protocol(SERVER, SERVER_ID, max_frame_size=max_frame_size)
    server.receive_data(client.data_to_send())
    server.events_received()
    server.accept()
    server.events_received()
    client.receive_data(server.data_to_send())
    client.events_received()
    return client, server


@pytest.mark.parametrize(
    ("limit", "sender", "target", "too_big"),
    [
        (8192, "a", None, 5000),
        (16384, "s" * 250, "t" * 250, 13000),  # fits the frame, not its room for a route
    ],
)
def test_groups_never_exceed_the_frame_limit(
    limit: int, sender: str, target: str | None, too_big: int
) -> None:
    client, server = open_small(limit)
    for i in range(100):
        client.send_message(sender, target, "T", msgpack.packb("x" * 100 + str(i)))
    data = client.data_to_send()
    assert all(len(p) <= limit for p in split_frames(data))
    server.receive_data(data)
    assert server.events_received() == []
    bodies = [msgpack.unpackb(b) for g in server.messages_received() for _, b in g.pairs()]
    assert bodies == ["x" * 100 + str(i) for i in range(100)]
    with pytest.raises(FrameSizeError):
        client.send_message(sender, target, "T", msgpack.packb("x" * too_big))


def test_protocol_fed_one_byte_at_a_time() -> None:
    pair = open_pair()
    for i in range(3):
        pair.client.send_message("w", "t", "T", msgpack.packb(b"x" * i))
    data = pair.client.data_to_send()
    for byte in data:
        pair.server.receive_data(bytes([byte]))
    got = envelopes(pair.server.messages_received())
    assert [e.body for e in got] == [b"", b"x", b"xx"]


def test_malformed_groups_and_tags_are_dropped() -> None:
    pair = open_pair()
    pair.server.receive_data(
        encode_frame(msgpack.packb([0, "a", None, "T"]))  # even length
        + encode_frame(msgpack.packb([0, 5, None, "T", b"\x01"]))  # sender not a str
        + encode_frame(msgpack.packb([0, "a", None, 7, b"\x01", "T", b"\x02", "U", 3]))
    )
    events = pair.server.events_received()
    assert len([e for e in events if isinstance(e, FrameDropped)]) == 2
    (group,) = pair.server.messages_received()
    assert [e.body for e in envelopes([group])] == [2]  # a bad tag, a body not bytes
    assert group.malformed == 2


def test_ping_is_answered_and_pong_reported() -> None:
    pair = open_pair()
    pair.client.send_ping(7)
    pair.pump()
    assert PongReceived(7) in pair.client_events


def test_undecodable_frame_on_an_open_connection_is_dropped_and_it_stays_up() -> None:
    pair = open_pair()
    pair.server.receive_data(encode_frame(b"\xc1not msgpack") + encode_frame(b"\x93\x63\x01\x02"))
    pair.client.send_message("w", None, "T", msgpack.packb("after"))
    pair.pump()
    events = pair.server.events_received() + pair.server_events
    dropped = [e for e in events if isinstance(e, FrameDropped)]
    assert len(dropped) == 2 and all(isinstance(d.error, DecodeError) for d in dropped)
    assert pair.server.state is OPEN
    assert [e.body for e in envelopes(pair.server_messages)] == ["after"]


def test_wrongly_typed_control_fields_are_dropped() -> None:
    pair = open_pair()
    pair.server.receive_data(encode_frame(msgpack.packb([6, "not an int"])))
    (event,) = pair.server.events_received()
    assert isinstance(event, FrameDropped)
    assert "field 'seq' is str" in str(event.error)


def test_oversized_frame_closes_the_connection_with_a_goodbye() -> None:
    pair = open_pair()
    pair.server.receive_data((2**31).to_bytes(4, "big"))
    closed = pair.closed(pair.server.events_received())
    assert isinstance(closed.error, FrameSizeError)
    goodbye = decode_record(pair.server.data_to_send()[4:])
    assert isinstance(goodbye, Goodbye) and "protocol error" in goodbye.reason


def test_hello_on_an_open_connection_is_a_protocol_error() -> None:
    pair = open_pair()
    pair.server.receive_data(
        encode_frame(encode_record(Hello(1, "default", "i", "n", "r", {}, bytes(32))))
    )
    closed = pair.closed(pair.server.events_received())
    assert "unexpected Hello" in closed.reason


def test_orderly_goodbye() -> None:
    pair = open_pair()
    pair.client.send_message("w", None, "T", msgpack.packb("last"))
    pair.client.close("done for today")
    pair.pump()
    assert envelopes(pair.server_messages)[-1].body == "last"
    closed = pair.closed(pair.server_events)
    assert closed.reason == "done for today" and closed.by_peer and closed.error is None
    assert isinstance(closed.exception(), ConnectionClosedOK)
    with pytest.raises(ConnectionClosedOK):
        pair.client.send_message("w", None, "T", b"\xc0")
    pair.client.close()  # idempotent


def test_eof_without_goodbye_is_an_error_close() -> None:
    pair = open_pair()
    pair.server.receive_eof()
    closed = pair.closed(pair.server.events_received())
    assert isinstance(closed.exception(), ConnectionClosedError)


def test_eof_inside_a_frame_and_during_handshake() -> None:
    pair = open_pair()
    pair.server.receive_data(b"\x00\x00\x00\x09abc")
    pair.server.receive_eof()
    assert "stream ended after 7 bytes" in pair.closed(pair.server.events_received()).reason
    server = Protocol(SERVER, SERVER_ID)
    server.receive_eof()
    (closed,) = server.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.error, HandshakeError)


def test_fail_tells_the_peer_why() -> None:
    pair = open_pair()
    pair.server.fail("heartbeat timeout")
    pair.pump()
    closed = pair.closed(pair.client_events)
    assert closed.reason == "heartbeat timeout" and closed.by_peer


def test_api_misuse_raises_invalid_state() -> None:
    client = Protocol(CLIENT, CLIENT_ID)
    assert client.state is HANDSHAKE
    with pytest.raises(InvalidStateError):
        client.send_message("a", None, "T", b"\xc0")
    with pytest.raises(InvalidStateError):
        client.accept()
    with pytest.raises(InvalidStateError):
        client.reject("no")
    server = Protocol(SERVER, SERVER_ID)
    with pytest.raises(InvalidStateError):
        server.accept()


def test_records_after_close_are_ignored() -> None:
    pair = open_pair()
    pair.server.receive_data(encode_frame(encode_record(Goodbye("bye"))))
    pair.server.events_received()
    pair.server.receive_data(encode_frame(encode_record(Ping(1))))
    pair.server.receive_eof()
    assert pair.server.events_received() == []


def test_welcome_before_proof_is_refused_by_a_client_with_a_token() -> None:
    client = Protocol(CLIENT, CLIENT_ID, secret=b"tok")
    client.data_to_send()
    client.receive_data(encode_frame(encode_record(Welcome("s", "fake", "", {}))))
    (closed,) = client.events_received()
    assert isinstance(closed, Closed) and isinstance(closed.error, AuthenticationError)


def split_frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        size = int.from_bytes(data[:4], "big")
        out.append(data[4 : 4 + size])
        data = data[4 + size :]
    return out
