"""Length-prefixed framing, sans-I/O.

A frame is a 4-byte big-endian unsigned length followed by that many payload bytes.
`FrameDecoder` is fed bytes split anywhere and hands back whole payloads; the declared
length is checked against the limit as soon as the 4 header bytes are in, before any of
the body is buffered, so a hostile header costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from .errors import FrameSizeError, IncompleteFrameError, InvalidStateError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FrameDecoder", "encode_frame", "encode_frames"]

DEFAULT_MAX_FRAME_SIZE: Final = 8 * 2**20
HEADER_SIZE: Final = 4

_HEADER = struct.Struct(">I")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


def encode_frame(payload: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Prefix `payload` with its length.

    Raises:
        FrameSizeError: the payload is larger than `max_frame_size`; the peer would
            refuse it, so it is refused here, where the bug is.
    """
    size = len(payload)
    if size > max_frame_size:
        raise FrameSizeError(size, max_frame_size)
    return _pack_header(size) + payload


def encode_frames(payloads: Iterable[bytes], max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Frame several payloads into one buffer, ready for a single write."""
    return b"".join([encode_frame(p, max_frame_size) for p in payloads])


class FrameDecoder:
    """Reassemble frames from a byte stream split at arbitrary points.

    Usage::

        dec = FrameDecoder()
        dec.feed(chunk)
        for payload in dec.frames():
            ...
        dec.feed_eof()

    After a `FrameSizeError` the stream cannot be resynchronised: the decoder stays
    broken and every later call raises the same error.
    """

    __slots__ = ("max_frame_size", "_buffer", "_error", "_eof")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError(f"max_frame_size must be >= 0, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: FrameSizeError | None = None
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes.

        Raises:
            InvalidStateError: called after `feed_eof()`.
            FrameSizeError: the stream is already broken by an oversized header.
        """
        if self._eof:
            raise InvalidStateError("feed() after feed_eof()")
        if self._error is not None:
            raise self._error
        self._buffer += data

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """`feed(data)` then `frames()`, in one call (the read path does it per read).

        Raises:
            The errors of `feed` and `frames`.
        """
        if self._eof or self._error is not None:
            self.feed(data)  # raises the right error
        if self._buffer or type(data) is not bytes:
            self._buffer += data
            return self.frames()
        # Nothing buffered (the common case): frames are sliced from `data` itself, and
        # only an incomplete tail is buffered. Twin of `frames`, which this must match.
        end = len(data)
        limit = self.max_frame_size
        pos = 0
        out: list[bytes] = []
        while end - pos >= HEADER_SIZE:
            (size,) = _unpack_header(data, pos)
            if size > limit:
                self._buffer += data[pos:]
                if not out:
                    return self.frames()  # raises FrameSizeError: the bad header is first
                return out  # what came before it; the next call raises
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            out.append(data[pos + HEADER_SIZE : stop])
            pos = stop
        if pos < end:
            self._buffer += data[pos:]
        return out

    def frames(self) -> list[bytes]:
        """Return every complete payload buffered so far, in order.

        Raises:
            FrameSizeError: a header declares more than `max_frame_size`. Payloads
                before the bad header are returned by the call that precedes the
                error, so nothing valid is lost: the error is raised only when the
                bad header is the first thing left in the buffer.
        """
        if self._error is not None:
            raise self._error
        buf = self._buffer
        end = len(buf)
        limit = self.max_frame_size
        pos = 0
        out: list[bytes] = []
        while end - pos >= HEADER_SIZE:
            (size,) = _unpack_header(buf, pos)
            if size > limit:
                if not out:
                    buf.clear()  # nothing after a bad header can be trusted
                    self._error = FrameSizeError(size, limit)
                    raise self._error
                break
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            out.append(bytes(buf[pos + HEADER_SIZE : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return out

    def feed_eof(self) -> None:
        """Mark the end of the stream.

        Raises:
            IncompleteFrameError: a partial frame is still buffered.
        """
        self._eof = True
        buf = self._buffer
        if not buf:
            return
        if len(buf) < HEADER_SIZE:
            raise IncompleteFrameError(len(buf), HEADER_SIZE)
        (size,) = _unpack_header(buf, 0)
        raise IncompleteFrameError(len(buf), HEADER_SIZE + size)
