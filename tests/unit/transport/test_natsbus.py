"""The NATS bus: subjects, the order of what one agent sends another, limits, forgeries.

Against a real nats-server (one for the session); the bus's own logic (names, grouping)
is tested without one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from ceylon.natsserver import NatsServer
from transport import Codec, EncodeError
from transport.natsbus import BROADCAST, DIRECT, NatsBus, NatsOptions, check_token
from transport.wire import bin_header, messages_prefix

from ...conftest import seconds, wait_until


@dataclasses.dataclass
class BusItem:
    seq: int
    text: str = ""


Received = list[tuple[str, str, list[tuple[str, bytes]]]]


def test_names_that_cannot_stand_in_a_subject_are_refused() -> None:
    assert check_token("workspace", "team-1_a") == "team-1_a"
    for bad in ("", "a.b", "a b", "*", ">", "x" * 129):
        with pytest.raises(ValueError, match="cannot be used on NATS"):
            check_token("agent id", bad)


def test_options_parse_a_list_of_urls() -> None:
    options = NatsOptions.parse(" nats://a:4222, nats://b:4222 ", token="t")
    assert options.servers == ["nats://a:4222", "nats://b:4222"]
    kwargs = options.connect_kwargs()
    assert kwargs["token"] == "t" and "user" not in kwargs
    assert kwargs["no_echo"] is False  # the agents of a process share one connection
    with pytest.raises(ValueError):
        NatsOptions([])


@pytest.fixture
async def pair(nats_server: NatsServer) -> AsyncIterator[tuple[NatsBus, NatsBus, Received]]:
    workspace = f"u{secrets.token_hex(4)}"
    options = NatsOptions([nats_server.url])
    sender = await NatsBus.open(options, workspace, "sender")
    receiver = await NatsBus.open(options, workspace, "receiver")
    got: Received = []
    await receiver.start(lambda kind, who, pairs: got.append((kind, who, pairs)))
    await sender.start(lambda kind, who, pairs: None)
    yield sender, receiver, got
    await sender.close()
    await receiver.close()


def decoded(got: Received) -> list[tuple[str, int]]:
    codec = Codec()
    return [(kind, codec.decode(tag, body).seq) for kind, _, pairs in got for tag, body in pairs]


async def test_broadcasts_and_direct_messages_arrive_in_the_order_sent(
    pair: tuple[NatsBus, NatsBus, Received],
) -> None:
    sender, receiver, got = pair
    kinds = []
    for seq in range(600):  # runs of direct messages between broadcasts, in one loop turn
        target = None if seq % 5 == 0 else "receiver"
        sender.send_nowait(BusItem(seq), target=target)
        kinds.append(BROADCAST if target is None else DIRECT)
    await sender.drain()
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: sum(len(p) for _, _, p in got) == 600)
    assert decoded(got) == list(zip(kinds, range(600), strict=True))
    assert {who for _, who, _ in got} == {"sender"}
    assert len(got) < 600  # runs went as groups, not a NATS message each
    assert sender.client is receiver.client  # one process: one connection


async def test_a_run_over_the_size_limit_goes_in_several_messages(
    pair: tuple[NatsBus, NatsBus, Received],
) -> None:
    sender, _, got = pair
    big = "x" * 100_000
    for seq in range(30):  # 3 MB in one loop turn, to one subject
        sender.send_nowait(BusItem(seq, big), target="receiver")
    await sender.drain()
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: sum(len(p) for _, _, p in got) == 30)
    assert [seq for _, seq in decoded(got)] == list(range(30))
    assert len(got) >= 3


async def test_malformed_and_forged_payloads_are_dropped_and_counted(
    pair: tuple[NatsBus, NatsBus, Received], nats_server: NatsServer
) -> None:
    _, receiver, got = pair
    raw = await nats.connect(nats_server.url)
    try:
        root = receiver.root
        tag, body = Codec().encode_packed(BusItem(7))
        group: Any = tag + bin_header(len(body)) + body
        await raw.publish(f"{root}.b.mallory", b"\xc1 not msgpack")
        await raw.publish(f"{root}.b.mallory", messages_prefix("sender", None, 1) + group)
        await raw.publish(f"{root}.b.mallory", messages_prefix("mallory", None, 1) + group)
        await raw.flush()
    finally:
        await raw.close()
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: len(got) == 1)
    assert got[0][1] == "mallory" and decoded(got) == [(BROADCAST, 7)]
    assert receiver.drops == {"malformed": 1, "forged sender": 1}


async def test_a_message_too_big_for_one_nats_message_is_refused_at_once(
    pair: tuple[NatsBus, NatsBus, Received],
) -> None:
    sender, _, _ = pair
    with pytest.raises(EncodeError, match="over what one NATS message may carry"):
        sender.send_nowait(BusItem(0, "x" * sender.max_message), target="receiver")
