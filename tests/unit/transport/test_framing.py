from __future__ import annotations

import pytest

from transport.errors import FrameSizeError, IncompleteFrameError, InvalidStateError
from transport.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame, encode_frames

PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"\x00\x00\x00\x05"]
STREAM = encode_frames(PAYLOADS)


def decode_in_chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    dec = FrameDecoder()
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        dec.feed(stream[previous:cut])
        out.extend(dec.frames())
        previous = cut
    dec.feed_eof()
    return out


def test_whole_stream() -> None:
    assert decode_in_chunks(STREAM, []) == PAYLOADS


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_every_single_split_point(cut: int) -> None:
    assert decode_in_chunks(STREAM, [cut]) == PAYLOADS


def test_one_byte_at_a_time_yields_nothing_until_each_last_byte() -> None:
    dec = FrameDecoder()
    frame = encode_frame(b"payload")
    for byte in frame[:-1]:
        dec.feed(bytes([byte]))
        assert dec.frames() == []
    dec.feed(frame[-1:])
    assert dec.frames() == [b"payload"]
    assert decode_in_chunks(STREAM, list(range(1, len(STREAM)))) == PAYLOADS


def test_every_pair_of_split_points_on_a_short_stream() -> None:
    stream = encode_frames([b"ab", b"", b"cde"])
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            assert decode_in_chunks(stream, [first, second]) == [b"ab", b"", b"cde"]


def test_trailing_partial_frame_stays_buffered() -> None:
    dec = FrameDecoder()
    trailing = encode_frame(b"second")[:7]
    dec.feed(encode_frame(b"first") + trailing)
    assert dec.frames() == [b"first"]
    assert dec.buffered == len(trailing)
    with pytest.raises(IncompleteFrameError) as info:
        dec.feed_eof()
    assert (info.value.received, info.value.expected) == (7, 10)


def test_eof_inside_a_header() -> None:
    dec = FrameDecoder()
    dec.feed(b"\x00\x00")
    assert dec.frames() == []
    with pytest.raises(IncompleteFrameError):
        dec.feed_eof()
    with pytest.raises(InvalidStateError):
        dec.feed(b"x")


def test_clean_eof() -> None:
    dec = FrameDecoder()
    dec.feed(encode_frame(b"x"))
    assert dec.frames() == [b"x"]
    dec.feed_eof()


def test_two_gib_header_fails_at_once_with_no_body_buffered() -> None:
    dec = FrameDecoder()
    dec.feed((2**31).to_bytes(4, "big"))
    with pytest.raises(FrameSizeError) as info:
        dec.frames()
    assert info.value.size == 2**31
    assert info.value.limit == DEFAULT_MAX_FRAME_SIZE
    assert "expected no more than" in str(info.value)
    assert dec.buffered == 0
    # The decoder stays broken: nothing after the bad header is trusted or kept.
    with pytest.raises(FrameSizeError):
        dec.feed(b"more")
    with pytest.raises(FrameSizeError):
        dec.frames()
    assert dec.buffered == 0


def test_valid_frames_before_an_oversized_header_are_delivered() -> None:
    dec = FrameDecoder(max_frame_size=10)
    dec.feed(encode_frame(b"ok") + (11).to_bytes(4, "big"))
    assert dec.frames() == [b"ok"]
    with pytest.raises(FrameSizeError):
        dec.frames()


def test_limit_is_inclusive_and_configurable() -> None:
    dec = FrameDecoder(max_frame_size=4)
    dec.feed(encode_frame(b"1234", 4))
    assert dec.frames() == [b"1234"]
    with pytest.raises(FrameSizeError):
        encode_frame(b"12345", 4)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=-1)


def test_many_small_frames_in_one_chunk() -> None:
    payloads = [str(i).encode() for i in range(10_000)]
    dec = FrameDecoder()
    dec.feed(encode_frames(payloads))
    assert dec.frames() == payloads
    assert dec.buffered == 0


def feed_frames_in_chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    dec = FrameDecoder()
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out.extend(dec.feed_frames(stream[previous:cut]))
        previous = cut
    dec.feed_eof()
    return out


def test_feed_frames_at_every_pair_of_split_points() -> None:
    # feed_frames slices frames out of the bytes it is given while nothing is buffered
    # (a path of its own): it must agree with feed() + frames() wherever reads split.
    stream = encode_frames([b"ab", b"", b"cde", bytes(300)])
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            got = feed_frames_in_chunks(stream, [first, second])
            assert got == [b"ab", b"", b"cde", bytes(300)]
            assert all(type(p) is bytes for p in got)
    assert feed_frames_in_chunks(STREAM, list(range(1, len(STREAM)))) == PAYLOADS


def test_feed_frames_takes_bytearray_and_memoryview() -> None:
    dec = FrameDecoder()
    assert dec.feed_frames(bytearray(encode_frame(b"a"))) == [b"a"]
    assert dec.feed_frames(memoryview(encode_frame(b"b"))) == [b"b"]


def test_feed_frames_delivers_what_precedes_an_oversized_header_then_fails() -> None:
    dec = FrameDecoder(max_frame_size=10)
    assert dec.feed_frames(encode_frame(b"ok") + (11).to_bytes(4, "big") + b"x") == [b"ok"]
    with pytest.raises(FrameSizeError):
        dec.frames()
    with pytest.raises(FrameSizeError):
        dec.feed_frames(encode_frame(b"later"))
    assert dec.buffered == 0


def test_feed_frames_fails_at_once_on_an_oversized_first_header() -> None:
    dec = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameSizeError) as info:
        dec.feed_frames((2**31).to_bytes(4, "big") + b"body")
    assert info.value.size == 2**31
    assert dec.buffered == 0
