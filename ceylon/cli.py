"""The ``ceylon`` command line: ``playground``, ``worker`` (and the plugins' commands).

Every command runs until SIGINT or SIGTERM, then shuts down in order (goodbyes sent) and
exits 0. Exit 1 means something failed; exit 2 a usage error or a refused handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import importlib
import inspect
import ipaddress
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from loguru import logger

import transport
from transport import TransportError, default_registry
from transport.natsbus import NatsOptions, check_token

from . import __version__
from .base.agent import BaseAgent
from .base.playground import BasePlayGround
from .config import DEFAULT_PORT, Settings, parse_address
from .errors import NotConnectedError
from .lease import DEFAULT_TTL
from .log import setup_cli_logging
from .permissions import AuthFileError, Permissions
from .task.journal import DEFAULT_STATE, open_store
from .task.plugin import LEASE
from .task.store import StoreError, TaskStore

__all__ = [
    "UsageError",
    "build_parser",
    "connect_agent",
    "import_modules",
    "load_object",
    "main",
    "nats_options",
]

EXIT_FAILED = 1
EXIT_USAGE = 2

T = TypeVar("T")


def load_object(spec: str) -> Any:
    """Import ``module:attribute`` (the current directory is searched too).

    Raises:
        ValueError: `spec` is not ``module:attribute``.
        ImportError, AttributeError: no such module or attribute.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return port


def address(text: str) -> str:
    """An argparse type: ``HOST:PORT`` with a port of 1 to 65535."""
    try:
        _, port = parse_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535) in {text!r}")
    return text


async def start_listening(playground: BasePlayGround) -> None:
    """`playground.start()`, with a port in use or an address this host does not have
    as a `UsageError`."""
    try:
        await playground.start()
    except OSError as exc:
        where = f"{playground.host}:{playground.requested_port}"
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None


def import_modules(names: Sequence[str]) -> None:
    """Import the user modules of ``--import`` (the current directory is searched too)
    and register the dataclasses and enums they define, so messages of those types can
    be decoded here.

    Raises:
        UsageError: a module cannot be imported.
    """
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # its own import errors too: the user's code, not ours
            raise UsageError(f"--import {name}: {type(exc).__name__}: {exc}") from None
        for value in list(vars(module).values()):
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if dataclasses.is_dataclass(value) or issubclass(value, enum.Enum):
                try:
                    default_registry.register(value)
                except TransportError as exc:  # a tag taken twice
                    raise UsageError(f"--import {name}: {exc}") from None


def _add_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module of yours first, so its message types are registered "
        "(custom task types, say) and its plugins found (repeatable)",
    )


def _add_security(parser: argparse.ArgumentParser, *, server: bool, auth: bool = False) -> None:
    group = parser.add_argument_group("security")
    group.add_argument("--workspace", default="default", help="workspace id (default: default)")
    group.add_argument(
        "--token",
        default=None,
        help="shared secret, proven by HMAC challenge-response (default: $CEYLON_TOKEN)",
    )
    if auth:
        group.add_argument(
            "--auth",
            metavar="FILE",
            help="per-token permissions instead of one --token: a TOML (or .json) file "
            "mapping each token to the names and roles it may claim and what it may do "
            "(see the README's Security model)",
        )
    group.add_argument("--tls-cert", metavar="PEM", help="certificate (chain) of this side")
    group.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    group.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="CA bundle: clients require the server's certificate to chain to it"
        + ("; a playground given one requires client certificates" if server else ""),
    )
    _add_nats(parser)


def _add_nats(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "NATS (instead of a TCP playground; pip install 'ceylon-runtime[nats]')"
    )
    group.add_argument(
        "--nats",
        metavar="URL[,URL...]",
        help="the workspace lives on these NATS servers (e.g. nats://127.0.0.1:4222); "
        "the --tls-* files, if given, secure the NATS connection",
    )
    group.add_argument("--nats-creds", metavar="FILE", help="NATS credentials (.creds) file")
    group.add_argument("--nats-user", metavar="USER", help="NATS user name")
    group.add_argument("--nats-password", metavar="PASSWORD", help="password of --nats-user")
    group.add_argument("--nats-token", metavar="TOKEN", help="NATS authentication token")


def nats_options(args: argparse.Namespace) -> NatsOptions | None:
    """The `NatsOptions` of ``--nats`` and its companions, or None without ``--nats``."""
    if not getattr(args, "nats", None):
        return None
    urls = [url.strip() for url in args.nats.split(",") if url.strip()]
    for url in urls:
        if not re.fullmatch(r"(nats|tls)://[^\s/]+(:\d+)?", url):
            raise UsageError(f"--nats takes nats://HOST:PORT URLs, got {url!r}")
    if not urls:
        raise UsageError("--nats takes nats://HOST:PORT URLs, got none")
    if args.token or getattr(args, "auth", None):
        flag = "--token" if args.token else "--auth"
        raise UsageError(f"{flag} is for a TCP playground; on NATS, NATS authenticates "
                         "(--nats-creds, --nats-user/--nats-password, --nats-token)")  # fmt: skip
    try:
        check_token("--workspace", args.workspace)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return NatsOptions(
        urls,
        token=args.nats_token,
        user=args.nats_user,
        password=args.nats_password,
        credentials=args.nats_creds,
        tls=_client_tls(args),
    )


def where(args: argparse.Namespace) -> str:
    """What a command reaches: the NATS servers, or the playground's address."""
    return f"NATS {args.nats}" if getattr(args, "nats", None) else str(args.connect)


async def connect_agent(
    agent: BaseAgent, args: argparse.Namespace, settings: Settings | None = None
) -> None:
    """Connect `agent` as ``--connect`` or ``--nats`` (with the security flags) say.

    Raises:
        what `BaseAgent.connect` raises.
    """
    if settings is None:
        settings = Settings(workspace=args.workspace, token=args.token, ssl=_client_tls(args))
    nats = nats_options(args)
    if nats is not None:
        await agent.connect(settings=dataclasses.replace(settings, nats=nats, ssl=None))
    else:
        await agent.connect(parse_address(args.connect), settings=settings)


_DEFAULTS = Settings()


def _add_liveness(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=_DEFAULTS.heartbeat_interval,
        metavar="S",
        help=f"seconds between pings (default {_DEFAULTS.heartbeat_interval:g})",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=_DEFAULTS.heartbeat_timeout,
        metavar="S",
        help=f"seconds without an answer before a peer is dead "
        f"(default {_DEFAULTS.heartbeat_timeout:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ceylon", description="Ceylon multi-agent runtime: playgrounds and agents over TCP."
    )
    parser.add_argument("--version", action="version", version=f"ceylon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pg = sub.add_parser("playground", help="run a playground that agents connect to")
    pg.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    pg.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port, 0 for a free one ({DEFAULT_PORT})",
    )
    pg.add_argument("--name", default="playground", help="the playground's agent name")
    pg.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="host a plugin (repeatable): " + ", ".join(sorted(PLUGINS)) if PLUGINS else "none",
    )
    _add_import(pg)
    _add_security(pg, server=True, auth=True)
    _add_liveness(pg)
    group = pg.add_argument_group("slow consumers")
    group.add_argument(
        "--slow-consumer",
        choices=("disconnect", "drop"),
        default=_DEFAULTS.slow_consumer,
        help="an agent that reads too slowly is disconnected after the grace period "
        "(default), or loses only what exceeds its queue, counted and reported to it",
    )
    group.add_argument(
        "--slow-consumer-grace",
        type=float,
        default=_DEFAULTS.slow_consumer_grace,
        metavar="S",
        help=f"seconds an agent may stay over its queue limit "
        f"(default {_DEFAULTS.slow_consumer_grace:g})",
    )
    group.add_argument(
        "--max-pending-bytes",
        type=int,
        default=_DEFAULTS.max_pending_bytes,
        metavar="N",
        help=f"queue limit of each agent, in bytes (default {_DEFAULTS.max_pending_bytes})",
    )
    pg.add_argument("--lease-ttl", type=float, default=DEFAULT_TTL, metavar="S",
                    help="with --nats: seconds before a standby playground takes over from "
                    "an active one that stopped renewing its lease "
                    f"(default {DEFAULT_TTL:g})")  # fmt: skip
    tasks = pg.add_argument_group("the tasks plugin (--plugin tasks)")
    tasks.add_argument("--state", metavar="PATH", default=DEFAULT_STATE,
                       help=f"journal the task state to this SQLite file and resume from it "
                       f"after a restart; :memory: for none (default {DEFAULT_STATE})")  # fmt: skip
    tasks.add_argument("--lease", type=float, default=LEASE, metavar="S",
                       help="seconds a resumed playground keeps a task for the worker that "
                       f"had it before handing it out again (default {LEASE:g})")  # fmt: skip
    tasks.add_argument("--max-worker-slots", type=int, default=64, metavar="N",
                       help="most tasks one worker is given at once, whatever it declares "
                       "(default 64)")  # fmt: skip
    tasks.add_argument("--role-timeout", type=float, default=600.0, metavar="S",
                       help="seconds a task waits for a worker of its role before it fails; "
                       "0 waits for ever (default 600)")  # fmt: skip
    tasks.add_argument("--task-timeout", type=float, default=None, metavar="S",
                       help="seconds a task may run when it and its group set none "
                       "(default: no limit)")  # fmt: skip
    tasks.add_argument("--keep-finished-groups", type=int, default=1000, metavar="N",
                       help="most finished task groups kept with their results; older ones "
                       "are forgotten (default 1000)")  # fmt: skip
    tasks.add_argument("--keep-finished-for", type=float, default=3600.0, metavar="S",
                       help="seconds a finished group is kept at most (3600)")  # fmt: skip
    pg.set_defaults(run=run_playground)

    wk = sub.add_parser("worker", help="run one agent that connects to a playground")
    wk.add_argument(
        "--connect", type=address, metavar="HOST:PORT", help="the playground (or --nats)"
    )
    wk.add_argument(
        "--agent",
        default="ceylon:Worker",
        metavar="MODULE:CLASS",
        help="agent class, called with name= and role= (default: ceylon:Worker)",
    )
    wk.add_argument("--name", default=None, help="agent name (default: CLASS-PID)")
    wk.add_argument("--role", default=None, help="agent role (default: the class's own)")
    wk.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for the agent class (repeatable; VALUE is JSON if it parses), "
        "e.g. --option max_concurrent_tasks=10",
    )
    wk.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit when the playground goes away instead of reconnecting",
    )
    wk.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="how long to keep trying to reach the playground at start (default 30)",
    )
    _add_import(wk)
    _add_security(wk, server=False)
    _add_liveness(wk)
    wk.set_defaults(run=run_worker)

    for spec in COMMANDS:
        load_object(spec)(sub)
    return parser


#: Plugins ``ceylon playground --plugin NAME`` can host: name -> "module:factory".
PLUGINS: dict[str, str] = {
    "tasks": "ceylon.task.plugin:attach",
    "meetings": "ceylon.scheduling.playground:attach",
}
#: Extra subcommands: "module:function"s that add a subparser to the subparsers action.
COMMANDS: list[str] = [
    "ceylon.task.cli:add_command",
    "ceylon.scheduling.cli:add_command",
    "ceylon.monitor:add_command",
]


def _server_tls(args: argparse.Namespace) -> Any:
    if not args.tls_cert and not args.tls_key:
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    return transport.server_context(args.tls_cert, args.tls_key, args.tls_ca)


def _client_tls(args: argparse.Namespace) -> Any:
    if not (args.tls_ca or args.tls_cert):
        return None
    return transport.client_context(args.tls_ca, args.tls_cert, args.tls_key)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_interruptibly(
    main: Coroutine[Any, Any, T],
    on_signal: Callable[[int], None] | None = None,
    grace: float = 1.0,
) -> tuple[T | None, int | None]:
    """Run `main` until it ends or SIGINT/SIGTERM ends it; returns (its result, or None
    if a signal cut it short; the signal, or None).

    With `on_signal`, the first signal calls it (to ask `main` to wrap up: its result
    is still returned) and `main` is cancelled only if it has not ended `grace` seconds
    later; without, or on a second signal, `main` is cancelled at once. Its cleanup
    (``finally``) runs either way.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(main)
    got: list[int] = []

    def signalled(signum: int) -> None:
        got.append(signum)
        if on_signal is None or len(got) > 1:
            task.cancel()
        else:
            on_signal(signum)
            loop.call_later(grace, task.cancel)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled, signum)
    try:
        try:
            return await task, (got[0] if got else None)
        except asyncio.CancelledError:
            if not got:
                raise
            return None, got[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def interrupted_exit(signum: int) -> int:
    """The exit code of a command a signal ended: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


async def _until_signalled(
    *waits: asyncio.Future[Any] | asyncio.Task[Any], ready: Callable[[], None] | None = None
) -> None:
    """Wait for SIGINT/SIGTERM or for any of `waits` to finish; `ready` is called once the
    signals are ours (so that one sent right after it is not a KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def signalled() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled)
    try:
        if ready is not None:
            ready()
        await asyncio.wait([stop, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _permissions(args: argparse.Namespace) -> Permissions | None:
    if not args.auth:
        return None
    if args.token:
        raise UsageError("--auth and --token go separately: the file holds the tokens")
    try:
        return Permissions.load(args.auth)
    except AuthFileError as exc:
        raise UsageError(f"--auth {exc}") from None


def _make_playground(args: argparse.Namespace) -> BasePlayGround:
    import_modules(args.imports)
    auth = _permissions(args)
    playground = BasePlayGround(
        name=args.name,
        port=args.port,
        host=args.host,
        workspace=args.workspace,
        token=args.token,
        settings=dataclasses.replace(
            _DEFAULTS,
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout,
            slow_consumer=args.slow_consumer,
            slow_consumer_grace=args.slow_consumer_grace,
            max_pending_bytes=args.max_pending_bytes,
        ),
        ssl=None if args.nats else _server_tls(args),
        auth=auth,
        nats=nats_options(args),
        lease_ttl=args.lease_ttl,
    )
    if auth is not None:
        logger.info("{} token(s) from {}", len(auth), args.auth)
    for name in args.plugin:
        if name not in PLUGINS:
            known = ", ".join(sorted(PLUGINS)) or "none"
            raise UsageError(f"unknown plugin {name!r} (known: {known})")
        factory = load_object(PLUGINS[name])
        options = _plugin_options(name, args, playground)
        try:
            factory(playground, **options)
        except ValueError as exc:
            raise UsageError(f"--plugin {name}: {exc}") from None
    return playground


def _plugin_options(
    name: str, args: argparse.Namespace, playground: BasePlayGround
) -> dict[str, Any]:
    if name != "tasks":
        return {}
    return {
        "max_worker_slots": args.max_worker_slots,
        "role_timeout": args.role_timeout or None,
        "task_timeout": args.task_timeout,
        "keep_finished_groups": args.keep_finished_groups,
        "keep_finished_for": args.keep_finished_for,
        "store": _jetstream_store if args.nats else _task_store(args.state),
        "lease": args.lease,
    }


async def _jetstream_store(playground: BasePlayGround) -> TaskStore:
    """On NATS, the task state lives in JetStream (a standby resumes from it)."""
    from .task.jetstream import journal_on_nats

    try:
        store = await journal_on_nats(playground)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"task state journaled to {store.path}", flush=True)
    return store


def _task_store(state: str) -> TaskStore | None:
    if state == ":memory:":
        print("task state in memory only (--state :memory:)", flush=True)
        return None
    try:
        store = open_store(state)
    except (StoreError, OSError) as exc:
        raise UsageError(f"--state {state}: {exc}") from None
    print(f"task state journaled to {store.path}", flush=True)
    return store


async def _playground(args: argparse.Namespace) -> int:
    playground = _make_playground(args)
    if args.nats:
        return await _playground_on_nats(playground)
    await start_listening(playground)
    tokens = args.token or os.environ.get("CEYLON_TOKEN") or playground.auth
    if not _is_loopback(args.host) and not tokens:
        logger.warning(
            "listening on {} without a token: anyone who can reach it may join "
            "(set --token or CEYLON_TOKEN)",
            args.host,
        )

    def ready() -> None:
        print(f"listening on {playground.address}", flush=True)

    try:
        await _until_signalled(ready=ready)
    finally:
        await playground.finish()
    return 0


async def _playground_on_nats(playground: BasePlayGround) -> int:
    """Wait in standby for the lease (a signal ends the wait), then run until a signal,
    or until the lease is lost (exit 1)."""
    print(f"on NATS {playground.address} (workspace {playground.workspace}): "
          "waiting for the lease", flush=True)  # fmt: skip
    try:
        _, signum = await run_interruptibly(playground.start())
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach NATS at {playground.address}: {exc}") from None
    if signum is not None:
        await playground.finish()
        return 0
    stopped = asyncio.ensure_future(playground.wait_finished())

    def ready() -> None:
        print(f"active on NATS {playground.address} (workspace {playground.workspace}, "
              f"epoch {playground.epoch})", flush=True)  # fmt: skip

    try:
        await _until_signalled(stopped, ready=ready)
    finally:
        stopped.cancel()
        lost = playground.stop_reason
        await playground.finish()
    if lost:
        print(f"stopped: {lost}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


def run_playground(args: argparse.Namespace) -> int:
    return transport.run(_playground(args))


def _make_agent(args: argparse.Namespace) -> BaseAgent:
    import_modules(args.imports)
    try:
        cls = load_object(args.agent)
    except (ValueError, ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load --agent {args.agent}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        raise UsageError(f"--agent {args.agent} is not an agent class (a ceylon.BaseAgent)")
    name = args.name or f"{cls.__name__}-{os.getpid()}"
    kwargs: dict[str, Any] = {"name": name}
    if args.role is not None:
        kwargs["role"] = args.role
    for option in args.option:
        key, sep, value = option.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--option takes KEY=VALUE, got {option!r}")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        known = _parameters(cls)
        unknown = [key for key in kwargs if key != "name" and key not in known]
        if unknown:
            accepted = ", ".join(known) or "none"
            raise UsageError(
                f"--option {unknown[0]}: {cls.__name__} takes no such option (it takes: {accepted})"
            ) from None
        raise UsageError(f"--agent {args.agent}: {exc}") from None
    except ValueError as exc:  # the class refused a value
        raise UsageError(f"--agent {args.agent}: {exc}") from None


def _parameters(cls: type) -> list[str]:
    """The keyword parameters the ``__init__``s of `cls` and its bases name."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            plain = parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if plain and parameter.name not in names and parameter.name != "name":
                names.append(parameter.name)
    return names


async def _worker(args: argparse.Namespace) -> int:
    agent = _make_agent(args)
    settings = Settings(
        workspace=args.workspace,
        token=args.token,
        ssl=_client_tls(args),
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        reconnect=not args.no_reconnect,
    )
    if bool(args.connect) == bool(args.nats):
        raise UsageError("give the playground as --connect HOST:PORT or the servers as --nats")
    delay = settings.reconnect_initial
    try:
        async with asyncio.timeout(args.connect_timeout):
            while True:
                try:
                    await connect_agent(agent, args, settings)
                    break
                except (OSError, transport.ConnectionClosed, NotConnectedError) as exc:
                    logger.info("playground not reachable yet ({}); retrying in {:g} s", exc,
                                delay)  # fmt: skip
                    await asyncio.sleep(delay)  # backoff between attempts, by design
                    delay = min(delay * 2, settings.reconnect_max)
    except TimeoutError:
        logger.error(
            "could not reach the playground at {} in {} s", where(args), args.connect_timeout
        )
        return EXIT_FAILED
    except transport.HandshakeError as exc:
        print(f"refused: {exc.reason}", file=sys.stderr, flush=True)  # said once, here
        return EXIT_USAGE
    stopped = asyncio.ensure_future(agent.wait_stopped())

    def ready() -> None:
        print(f"agent {agent.name} connected to {where(args)}", flush=True)

    try:
        await _until_signalled(stopped, ready=ready)
    finally:
        await agent.stop()
        stopped.cancel()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    return transport.run(_worker(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_cli_logging(getattr(args, "verbose", False))
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
