"""Seeded, bounded fuzzing of the frame decoder, the record decoder, the codec and the
connection state machine (the contract of websockets' fuzz_websocket_parser.py): every
input is accepted or refused with a documented error; anything else is a bug.

Size and seed: ``--fuzz-iterations N --fuzz-seed S`` (the per-test timeout scales with N).
"""

from __future__ import annotations

import random
import time

import msgpack
import pytest

from transport.codec import PLAIN_TAG, Codec, TypeRegistry
from transport.errors import DecodeError, FrameSizeError, IncompleteFrameError
from transport.framing import FrameDecoder, encode_frame
from transport.protocol import CLIENT, OPEN, SERVER, PeerAuthenticated, Protocol
from transport.wire import (
    PROTOCOL_VERSION,
    Goodbye,
    Hello,
    PeerInfo,
    Ping,
    Pong,
    decode_record,
    encode_record,
    messages_prefix,
)

SERVER_ID = PeerInfo("s", "server", "", {})
CLIENT_ID = PeerInfo("c", "client", "", {})
MAX_SECONDS_PER_INPUT = 1.0


def corpus(codec: Codec) -> list[bytes]:
    """Valid byte streams that mutations start from."""
    hello = encode_frame(
        encode_record(Hello(PROTOCOL_VERSION, "default", "c", "client", "", {}, bytes(32)))
    )
    tag, body = codec.encode({"a": [1, (2, 3), {4}], "b": b"\x00"})
    envelopes = b"".join(
        encode_frame(
            messages_prefix("c", target, 2)
            + (codec.tag_bytes(tag) + msgpack.packb(body, use_bin_type=True)) * 2
        )
        for target in (None, "server")
    )
    return [
        hello,
        hello + envelopes,
        envelopes,
        encode_frame(encode_record(Ping(1))) + encode_frame(encode_record(Pong(1))),
        encode_frame(encode_record(Goodbye("bye"))),
        encode_frame(msgpack.packb([0, "c", None, "Missing", {"x": 1}])),
        encode_frame(msgpack.packb([0, "c", None, "T", msgpack.ExtType(1, b"\x92\xa1X\x80")])),
        encode_frame(msgpack.packb([0, "c", None, "Missing", msgpack.packb({"x": 1})])),
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0xC1, 0xDD, 0xC7])
        else:
            buf = buf[:pos]  # truncation
    return bytes(buf)


def random_input(rng: random.Random, seeds: list[bytes]) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 64))
    if kind == 1:
        seed = rng.choice(seeds)
        return seed[: rng.randint(0, len(seed))]
    if kind == 2:
        return encode_frame(rng.randbytes(rng.randint(0, 48)))
    if kind == 3:  # plausible records with random fields
        fields = [
            rng.choice([None, 1, -1, "x", b"y", [], {}, 2**40, 1.5, True])
            for _ in range(rng.randint(0, 8))
        ]
        return encode_frame(msgpack.packb([rng.randint(-1, 10), *fields]))
    return mutate(rng, rng.choice(seeds))


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 64])
        out.append(data[pos : pos + step])
        pos += step
    return out


def open_server() -> Protocol:
    server = Protocol(SERVER, SERVER_ID)
    client = Protocol(CLIENT, CLIENT_ID)
    server.receive_data(client.data_to_send())
    assert isinstance(server.events_received()[0], PeerAuthenticated)
    server.accept()
    server.events_received()
    server.data_to_send()
    assert server.state is OPEN
    return server


def exercise(rng: random.Random, data: bytes, codec: Codec) -> None:
    # 1. Framing: only the documented framing errors.
    decoder = FrameDecoder(max_frame_size=1024)
    payloads: list[bytes] = []
    try:
        for piece in chunks(rng, data):
            decoder.feed(piece)
            payloads.extend(decoder.frames())
        decoder.feed_eof()
    except (FrameSizeError, IncompleteFrameError):
        pass
    # 2. Records and application bodies: only DecodeError.
    for payload in [*payloads, data]:
        try:
            decode_record(payload)
        except DecodeError:
            pass
        for tag in (PLAIN_TAG, "Probe"):
            try:
                codec.decode(tag, payload)
            except DecodeError:
                pass
            try:
                codec.build(tag, codec.unpack(payload))
            except DecodeError:
                pass
    # 3. The state machine, in the handshake and open: never raises.
    for protocol in (
        Protocol(SERVER, SERVER_ID, secret=b"t"),
        Protocol(CLIENT, CLIENT_ID),
        open_server(),
    ):
        for piece in chunks(rng, data):
            protocol.receive_data(piece)
        protocol.receive_eof()
        protocol.events_received()
        for group in protocol.messages_received():
            try:
                envelopes = group.envelopes()
            except DecodeError:
                continue
            for envelope in envelopes:
                try:
                    codec.decode(envelope.tag, envelope.body)
                except DecodeError:
                    pass
        protocol.data_to_send()


def test_fuzz_decoders_and_state_machine(fuzz_iterations: int, fuzz_seed: int) -> None:
    rng = random.Random(fuzz_seed)
    codec = Codec(TypeRegistry())
    seeds = corpus(codec)
    started = time.monotonic()
    for i in range(fuzz_iterations):
        data = random_input(rng, seeds)
        t0 = time.monotonic()
        try:
            exercise(rng, data, codec)
        except Exception as exc:  # anything undocumented is a bug: report the input
            pytest.fail(f"input {i} (seed {fuzz_seed}) {data!r} raised {exc!r}")
        assert time.monotonic() - t0 < MAX_SECONDS_PER_INPUT, f"input {i} hung: {data!r}"
    elapsed = time.monotonic() - started
    print(f"fuzzed {fuzz_iterations} inputs (seed {fuzz_seed}) in {elapsed:.1f} s")
