"""Per-token permissions: the ``--auth FILE`` of a playground, sans-I/O.

Each token of the file names who may use it and what they may do, NATS-style::

    # auth.toml
    [[tokens]]
    user = "planner"                 # shown in logs and refusals (default: "token N")
    token = "a long random secret"   # at least 16 characters, each token once
    names = ["planner", "planner-*"] # names it may join under (globs; default all)
    roles = ["admin"]                # roles it may claim (globs; default all)
    allow = ["submit_tasks", "query"]  # what it may do (default: everything)
    send = ["task_worker"]           # roles it may send direct messages to (default all)

The same in JSON: ``{"tokens": [{"user": "planner", "token": "...", ...}]}``. The
permissions (`PERMISSIONS`):

- ``submit_tasks``: submit task groups to the task plugin;
- ``serve_tasks``: be given tasks, and report on them;
- ``plan_meetings``: ask the meeting plugin for a plan;
- ``answer_meetings``: be asked for calendars and bookings, and answer;
- ``query``: list agents, ask the playground's status, subscribe to joins and leaves
  (an agent with ``on_connect``/``on_disconnect`` handlers subscribes);
- ``broadcast``: send broadcasts.

A token's agent may also join with a generated id (a UUID) or an id its names allow;
anything else it claims or does is refused with a reason naming the permission.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from transport.handshake import key_id

__all__ = ["MIN_TOKEN_LENGTH", "PERMISSIONS", "AuthFileError", "Grant", "Permissions"]

PERMISSIONS: Final = (
    "submit_tasks",
    "serve_tasks",
    "plan_meetings",
    "answer_meetings",
    "query",
    "broadcast",
)
#: Shortest token a permissions file may hold: a guessable one is no token at all.
MIN_TOKEN_LENGTH: Final = 16
_KEYS: Final = frozenset({"user", "token", "names", "roles", "allow", "send"})


class AuthFileError(ValueError):
    """A permissions file cannot be read or does not follow the format."""


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


@dataclasses.dataclass(frozen=True)
class Grant:
    """What the holder of one token may claim and do."""

    user: str
    names: tuple[str, ...] = ("*",)
    roles: tuple[str, ...] = ("*",)
    allow: frozenset[str] = frozenset(PERMISSIONS)
    send: tuple[str, ...] = ("*",)

    def claim_refusal(self, agent_id: str, name: str, role: str) -> str | None:
        """Why an agent of this token may not join as (`agent_id`, `name`, `role`)."""
        if not _matches(name, self.names):
            return self._not_permitted(f"the name {name!r}", "names", self.names)
        if not _matches(role, self.roles):
            return self._not_permitted(f"the role {role!r}", "roles", self.roles)
        if agent_id != name and not _is_uuid(agent_id) and not _matches(agent_id, self.names):
            return self._not_permitted(f"the id {agent_id!r}", "names", self.names)
        return None

    def permits(self, permission: str) -> bool:
        return permission in self.allow

    def refusal(self, permission: str) -> str | None:
        """None if `permission` is granted, else the reason to give."""
        if permission in self.allow:
            return None
        return f"not permitted: {permission} (user {self.user!r})"

    def send_refusal(self, role: str) -> str | None:
        """None if this token's agents may send direct messages to agents of `role`."""
        if _matches(role, self.send):
            return None
        return f"not permitted: send to role {role!r} (user {self.user!r})"

    def _not_permitted(self, what: str, field: str, allowed: tuple[str, ...]) -> str:
        return f"not permitted: {what} (user {self.user!r} may claim {field} {list(allowed)})"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Permissions:
    """The grants of a permissions file, by the key id of their token."""

    def __init__(self, grants: Mapping[str, Grant]) -> None:
        if not grants:
            raise AuthFileError("no tokens: a permissions file needs at least one")
        self.tokens: tuple[str, ...] = tuple(grants)
        self._by_key = {key_id(token.encode()): grant for token, grant in grants.items()}

    def __len__(self) -> int:
        return len(self._by_key)

    def grant(self, key: bytes) -> Grant | None:
        """The grant of the token with key id `key` (`transport.handshake.key_id`)."""
        return self._by_key.get(key)

    @classmethod
    def load(cls, path: str | Path) -> Permissions:
        """Read a permissions file: TOML, or JSON when its name ends in ``.json``.

        Raises:
            AuthFileError: it cannot be read or parsed, or breaks the format (the
                message names the file and the entry).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthFileError(f"{path}: cannot read it: {exc}") from None
        try:
            document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if path.suffix == ".json" else "TOML"
            raise AuthFileError(f"{path}: not valid {kind}: {exc}") from None
        try:
            return cls.from_document(document)
        except AuthFileError as exc:
            raise AuthFileError(f"{path}: {exc}") from None

    @classmethod
    def from_document(cls, document: Any) -> Permissions:
        """Permissions from a parsed file (``{"tokens": [{...}, ...]}``).

        Raises:
            AuthFileError: the document breaks the format.
        """
        if not isinstance(document, dict) or set(document) != {"tokens"}:
            raise AuthFileError('expected one key, "tokens", a list of tokens')
        entries = document["tokens"]
        if not isinstance(entries, list):
            raise AuthFileError('"tokens" must be a list')
        grants: dict[str, Grant] = {}
        for number, entry in enumerate(entries, 1):
            token, grant = _entry(entry, number)
            if token in grants:
                raise AuthFileError(f"token {number} ({grant.user}): the same token is given twice")
            grants[token] = grant
        return cls(grants)


def _entry(entry: Any, number: int) -> tuple[str, Grant]:
    where = f"token {number}"
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where}: expected a table of user, token, names, roles, allow, send")
    user = entry.get("user", where)
    if not isinstance(user, str) or not user:
        raise AuthFileError(f"{where}: user must be a non-empty string")
    where = f"{where} ({user})"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise AuthFileError(f"{where}: unknown key(s) {unknown} (known: {sorted(_KEYS)})")
    token = entry.get("token")
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        raise AuthFileError(
            f"{where}: token must be a string of at least {MIN_TOKEN_LENGTH} characters"
        )
    names = _patterns(entry, "names", where)
    roles = _patterns(entry, "roles", where)
    send = _patterns(entry, "send", where)
    allow = _patterns(entry, "allow", where, ("*",))
    if allow == ("*",):
        allowed = frozenset(PERMISSIONS)
    else:
        wrong = sorted(set(allow) - set(PERMISSIONS))
        if wrong:
            raise AuthFileError(
                f"{where}: unknown permission(s) {wrong} (known: {list(PERMISSIONS)})"
            )
        allowed = frozenset(allow)
    return token, Grant(user, names, roles, allowed, send)


def _patterns(
    entry: dict[str, Any], key: str, where: str, default: Iterable[str] = ("*",)
) -> tuple[str, ...]:
    value = entry.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthFileError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)
