from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ceylon import AgentDetail, BaseAgent, HandlerSignatureError, on, on_connect, on_run
from ceylon.dispatch import invoke
from ceylon.handlers import HandlerTable, pattern_matches


@dataclasses.dataclass
class Ping:
    n: int


@dataclasses.dataclass
class SubPing(Ping):
    extra: str = ""


@dataclasses.dataclass
class Other:
    x: int


SENDER = AgentDetail("id-1", "sender", "role")


class Parent(BaseAgent):
    @on(Ping)
    async def ping(self, msg: Ping) -> str:
        return "parent"

    @on(Other)
    async def other(self, msg: Other, time: int, agent: AgentDetail) -> tuple[Any, ...]:
        return ("other", time, agent)

    @on_connect("*:worker")
    async def joined(self, topic: str, agent: AgentDetail) -> None:
        pass

    @on_run()
    async def loop(self) -> None:
        pass


class Child(Parent):
    @on(Ping)
    async def ping(self, msg: Ping, agent: AgentDetail) -> str:  # overrides by name
        return f"child from {agent.name}"


class Quiet(Parent):
    async def other(self, msg: Other, time: int, agent: AgentDetail) -> tuple[Any, ...]:
        return ()  # a plain override removes the handler


async def call(agent: BaseAgent, message: Any) -> list[Any]:
    specs = agent._table.for_message(type(message))
    return [await invoke(spec, agent, message, SENDER, 1234) for spec in specs]


async def test_injection_by_name() -> None:
    agent = Parent("p")
    assert await call(agent, Ping(1)) == ["parent"]
    assert await call(agent, Other(2)) == [("other", 1234, SENDER)]


class Shapes(BaseAgent):
    """One handler per way of asking for the injected values."""

    @on(Ping)
    async def nothing(self, msg: Ping) -> Any:
        return ("nothing", msg.n)

    @on(Ping)
    async def agent_only(self, msg: Ping, agent: AgentDetail) -> Any:
        return ("agent", agent)

    @on(Ping)
    async def time_only(self, msg: Ping, time: int) -> Any:
        return ("time", time)

    @on(Ping)
    async def agent_then_time(self, msg: Ping, agent: AgentDetail, time: int) -> Any:
        return ("agent,time", agent, time)

    @on(Ping)
    async def keyword_only(self, msg: Ping, *, time: int, agent: AgentDetail) -> Any:
        return ("kw", time, agent)

    @on(Ping)
    async def mixed(self, msg: Ping, agent: AgentDetail, *, time: int) -> Any:
        return ("mixed", agent, time)

    @on(Ping)
    async def var_kw(self, msg: Ping, agent: AgentDetail, **rest: Any) -> Any:
        return ("var_kw", agent, rest)

    @on(Ping)
    async def defaulted(self, msg: Ping, time: int = 0) -> Any:
        return ("defaulted", time)

    @on(Ping)
    async def positional_only(self, msg: Ping, time: int, agent: AgentDetail, /) -> Any:
        return ("posonly", time, agent)


async def test_every_signature_gets_the_values_it_asks_for() -> None:
    results = await call(Shapes("s"), Ping(7))
    assert sorted(results, key=lambda r: r[0]) == sorted(
        [
            ("nothing", 7),
            ("agent", SENDER),
            ("time", 1234),
            ("agent,time", SENDER, 1234),
            ("kw", 1234, SENDER),
            ("mixed", SENDER, 1234),
            ("var_kw", SENDER, {"time": 1234}),
            ("defaulted", 1234),
            ("posonly", 1234, SENDER),
        ],
        key=lambda r: r[0],
    )


async def test_inheritance_and_override() -> None:
    child = Child("c")
    assert await call(child, Ping(1)) == ["child from sender"]
    assert await call(child, Other(1)) == [("other", 1234, SENDER)]  # inherited
    assert len(child._table.connect) == 1 and len(child._table.run) == 1
    assert await call(Quiet("q"), Other(1)) == []


async def test_subclass_messages_reach_the_base_class_handler() -> None:
    assert await call(Parent("p"), SubPing(1, "x")) == ["parent"]


async def test_instance_level_handlers() -> None:
    agent = Parent("p")
    seen = []

    @agent.on(Other)
    async def extra(msg: Other, agent: AgentDetail) -> None:
        seen.append((msg.x, agent.name))

    results = await call(agent, Other(5))
    assert results[0][0] == "other" and seen == [(5, "sender")]
    assert await call(Parent("fresh"), Other(5)) == [("other", 1234, SENDER)]  # class untouched


def test_bad_signatures_fail_when_the_class_is_defined() -> None:
    with pytest.raises(HandlerSignatureError, match="async def"):

        class NotAsync(BaseAgent):
            @on(Ping)
            def handle(self, msg: Ping) -> None:  # type: ignore[type-var]
                pass

    with pytest.raises(HandlerSignatureError, match="cannot be positional-only"):

        class PositionalOnly(BaseAgent):
            @on(Ping)
            async def handle(self, msg: Ping, agent: AgentDetail, /, *, time: int) -> None:
                pass

    with pytest.raises(HandlerSignatureError, match="'extra' cannot be supplied"):

        class Extra(BaseAgent):
            @on(Ping)
            async def handle(self, msg: Ping, extra: int) -> None:
                pass

    with pytest.raises(HandlerSignatureError, match="message must be its first"):

        class NoMessage(BaseAgent):
            @on(Ping)
            async def handle(self) -> None:
                pass

    with pytest.raises(HandlerSignatureError, match=r"takes \(topic: str, agent"):

        class BadConnect(BaseAgent):
            @on_connect("*")
            async def joined(self, topic: str) -> None:
                pass

    agent = Parent("p")
    with pytest.raises(HandlerSignatureError):

        @agent.on(Ping)
        async def handler(self: Any, msg: Ping, other: int) -> None:
            pass


def test_handler_types_are_registered_when_the_class_is_defined() -> None:
    from transport import default_registry

    @dataclasses.dataclass
    class FreshMessage:
        value: int

    class Uses(BaseAgent):
        @on(FreshMessage)
        async def h(self, msg: FreshMessage) -> None:
            pass

    assert default_registry.spec_of_type(FreshMessage) is not None


def test_defaults_and_kwargs_are_accepted() -> None:
    class Flexible(BaseAgent):
        @on(Ping)
        async def a(self, msg: Ping, time: int = 0, *, agent: AgentDetail | None = None) -> None:
            pass

        @on(Other)
        async def b(self, msg: Other, **context: Any) -> None:
            pass

    table = Flexible._ceylon_table
    (spec,) = table.for_message(Ping)
    assert spec.wants_time and spec.wants_agent
    (spec,) = table.for_message(Other)
    assert spec.wants_time and spec.wants_agent


def test_patterns() -> None:
    assert pattern_matches("*", "ws", "worker")
    assert pattern_matches("*:worker", "ws", "worker")
    assert not pattern_matches("*:worker", "ws", "admin")
    assert pattern_matches("ws:*", "ws", "x") and not pattern_matches("other", "ws", "x")
    assert pattern_matches("ws", "ws", "x")


def test_empty_table() -> None:
    table = HandlerTable()
    assert table.for_message(Ping) == ()


def test_the_dispatchers_fast_paths_are_marked_on_the_spec() -> None:
    specs = {spec.name: spec for spec in Shapes("s")._table.for_message(Ping)}
    assert {name for name, spec in specs.items() if spec.message_only} == {"nothing"}
    assert {name for name, spec in specs.items() if spec.with_agent} == {"agent_only"}
