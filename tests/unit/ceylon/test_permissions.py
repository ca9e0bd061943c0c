"""The permissions file (`ceylon.permissions`): its format, its defaults, what a grant allows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from ceylon.permissions import MIN_TOKEN_LENGTH, PERMISSIONS, AuthFileError, Grant, Permissions
from transport.handshake import key_id

PLANNER = "planner-token-0123456789"
WORKER = "worker-token-0123456789"
PLAIN = "plain-token-0123456789ab"

TOML = f"""
# three tokens: one with everything spelled out, one with few rights, one all defaults
[[tokens]]
user = "planner"
token = "{PLANNER}"
names = ["planner", "planner-*"]
roles = ["admin"]
allow = ["submit_tasks", "query"]
send = ["task_worker"]

[[tokens]]
user = "workers"
token = "{WORKER}"
names = ["worker-*"]
roles = ["processor", "task_*"]
allow = []
send = []

[[tokens]]
token = "{PLAIN}"
"""

DOCUMENT: dict[str, Any] = {
    "tokens": [
        {
            "user": "planner",
            "token": PLANNER,
            "names": ["planner", "planner-*"],
            "roles": ["admin"],
            "allow": ["submit_tasks", "query"],
            "send": ["task_worker"],
        },
        {
            "user": "workers",
            "token": WORKER,
            "names": ["worker-*"],
            "roles": ["processor", "task_*"],
            "allow": [],
            "send": [],
        },
        {"token": PLAIN},
    ]
}

EXPECTED = {
    PLANNER: Grant(
        "planner",
        ("planner", "planner-*"),
        ("admin",),
        frozenset({"submit_tasks", "query"}),
        ("task_worker",),
    ),
    WORKER: Grant("workers", ("worker-*",), ("processor", "task_*"), frozenset(), ()),
    PLAIN: Grant("token 3", ("*",), ("*",), frozenset(PERMISSIONS), ("*",)),
}


def grant_of(permissions: Permissions, token: str) -> Grant:
    found = permissions.grant(key_id(token.encode()))
    assert found is not None, token
    return found


def one(entry: dict[str, Any]) -> Grant:
    """The grant of a document holding just `entry` (with a token added if it has none)."""
    entry = {"token": PLANNER, **entry}
    return grant_of(Permissions.from_document({"tokens": [entry]}), entry["token"])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- loading --------------------------------------------------------------------------


def test_a_toml_file_is_loaded(tmp_path: Path) -> None:
    permissions = Permissions.load(write(tmp_path, "auth.toml", TOML))
    assert len(permissions) == 3
    assert permissions.tokens == (PLANNER, WORKER, PLAIN)
    for token, expected in EXPECTED.items():
        assert grant_of(permissions, token) == expected


def test_a_json_file_gives_the_same_grants_as_the_toml_one(tmp_path: Path) -> None:
    from_toml = Permissions.load(write(tmp_path, "auth.toml", TOML))
    from_json = Permissions.load(write(tmp_path, "auth.json", json.dumps(DOCUMENT)))
    assert from_json.tokens == from_toml.tokens
    assert len(from_json) == len(from_toml) == 3
    for token in EXPECTED:
        assert grant_of(from_json, token) == grant_of(from_toml, token) == EXPECTED[token]


def test_load_takes_a_str_path_too(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.json", json.dumps(DOCUMENT))
    assert grant_of(Permissions.load(str(path)), WORKER) == EXPECTED[WORKER]


def test_only_a_json_suffix_reads_json(tmp_path: Path) -> None:
    # The same JSON text under a name not ending in .json is read as TOML, and is not TOML.
    path = write(tmp_path, "auth.conf", json.dumps(DOCUMENT))
    with pytest.raises(AuthFileError, match=r"auth\.conf: not valid TOML"):
        Permissions.load(path)


def test_grant_is_found_by_the_key_id_of_its_token() -> None:
    permissions = Permissions.from_document(DOCUMENT)
    assert permissions.grant(key_id(PLANNER.encode())) == EXPECTED[PLANNER]
    assert permissions.grant(key_id(WORKER.encode())) == EXPECTED[WORKER]
    # By key id, not by the token itself, and an unknown token has no grant.
    assert permissions.grant(PLANNER.encode()) is None
    assert permissions.grant(key_id(b"a token that is not in the file")) is None
    assert permissions.grant(b"") is None


def test_permissions_from_grants_directly() -> None:
    permissions = Permissions({PLANNER: Grant("a"), WORKER: Grant("b")})
    assert len(permissions) == 2 and permissions.tokens == (PLANNER, WORKER)
    assert grant_of(permissions, WORKER) == Grant("b")
    with pytest.raises(AuthFileError, match="no tokens"):
        Permissions({})


# -- defaults -------------------------------------------------------------------------


def test_omitted_fields_take_their_defaults() -> None:
    grant = one({})
    assert grant == Grant("token 1")
    assert grant.names == ("*",) and grant.roles == ("*",) and grant.send == ("*",)
    assert grant.allow == frozenset(PERMISSIONS)
    assert all(grant.permits(p) and grant.refusal(p) is None for p in PERMISSIONS)


def test_the_default_user_is_numbered_by_position() -> None:
    document = {
        "tokens": [{"token": PLANNER, "user": "named"}, {"token": WORKER}, {"token": PLAIN}]
    }
    permissions = Permissions.from_document(document)
    assert [grant_of(permissions, t).user for t in (PLANNER, WORKER, PLAIN)] == [
        "named",
        "token 2",
        "token 3",
    ]


def test_allow_omitted_is_every_permission() -> None:
    assert one({}).allow == frozenset(PERMISSIONS)


def test_allow_empty_is_nothing() -> None:
    grant = one({"allow": []})
    assert grant.allow == frozenset()
    assert not any(grant.permits(p) for p in PERMISSIONS)
    assert all(grant.refusal(p) is not None for p in PERMISSIONS)


def test_allow_star_is_everything() -> None:
    assert one({"allow": ["*"]}).allow == frozenset(PERMISSIONS)


def test_allow_lists_exactly_what_is_granted() -> None:
    grant = one({"allow": ["broadcast", "query"]})
    assert grant.allow == frozenset({"broadcast", "query"})
    assert grant.permits("query") and grant.permits("broadcast")
    assert not grant.permits("submit_tasks") and not grant.permits("serve_tasks")


def test_empty_names_roles_and_send_allow_nothing() -> None:
    grant = one({"names": [], "roles": [], "send": []})
    assert grant.names == () and grant.roles == () and grant.send == ()
    assert grant.claim_refusal("x", "x", "r") is not None
    assert grant.send_refusal("r") is not None


def test_the_permissions_are_the_documented_six() -> None:
    assert PERMISSIONS == (
        "submit_tasks",
        "serve_tasks",
        "plan_meetings",
        "answer_meetings",
        "query",
        "broadcast",
    )
    assert MIN_TOKEN_LENGTH == 16


def test_a_token_of_exactly_the_minimum_length_is_accepted() -> None:
    token = "x" * MIN_TOKEN_LENGTH
    permissions = Permissions.from_document({"tokens": [{"token": token}]})
    assert grant_of(permissions, token) == Grant("token 1")


# -- format errors --------------------------------------------------------------------

FORMAT_ERRORS: list[tuple[str, Any, str]] = [
    ("not a dict", [{"token": PLANNER}], 'expected one key, "tokens", a list of tokens'),
    ("a string", "tokens", 'expected one key, "tokens", a list of tokens'),
    ("no tokens key", {}, 'expected one key, "tokens", a list of tokens'),
    (
        "misspelt tokens",
        {"token": [{"token": PLANNER}]},
        'expected one key, "tokens", a list of tokens',
    ),
    (
        "extra top-level key",
        {"tokens": [{"token": PLANNER}], "users": []},
        'expected one key, "tokens", a list of tokens',
    ),
    ("tokens a table", {"tokens": {"token": PLANNER}}, '"tokens" must be a list'),
    ("tokens a string", {"tokens": PLANNER}, '"tokens" must be a list'),
    ("no tokens at all", {"tokens": []}, "no tokens: a permissions file needs at least one"),
    (
        "entry not a table",
        {"tokens": [{"token": PLANNER}, PLANNER]},
        "token 2: expected a table of user, token, names, roles, allow, send",
    ),
    (
        "unknown key",
        {"tokens": [{"user": "ops", "token": PLANNER, "colour": "red", "admin": True}]},
        "token 1 (ops): unknown key(s) ['admin', 'colour'] (known: "
        "['allow', 'names', 'roles', 'send', 'token', 'user'])",
    ),
    (
        "token missing",
        {"tokens": [{"token": PLANNER}, {"user": "ops"}]},
        "token 2 (ops): token must be a string of at least 16 characters",
    ),
    (
        "token too short",
        {"tokens": [{"token": "x" * (MIN_TOKEN_LENGTH - 1)}]},
        "token 1 (token 1): token must be a string of at least 16 characters",
    ),
    (
        "token not a string",
        {"tokens": [{"token": 12345678901234567890}]},
        "token 1 (token 1): token must be a string of at least 16 characters",
    ),
    (
        "same token twice",
        {"tokens": [{"token": PLANNER}, {"token": WORKER}, {"user": "b", "token": PLANNER}]},
        "token 3 (b): the same token is given twice",
    ),
    (
        "unknown permission",
        {"tokens": [{"token": PLANNER, "allow": ["query", "fly", "admin"]}]},
        "token 1 (token 1): unknown permission(s) ['admin', 'fly'] (known: "
        "['submit_tasks', 'serve_tasks', 'plan_meetings', 'answer_meetings', 'query', "
        "'broadcast'])",
    ),
    (
        "star among other permissions",
        {"tokens": [{"token": PLANNER, "allow": ["*", "query"]}]},
        "token 1 (token 1): unknown permission(s) ['*'] (known: "
        "['submit_tasks', 'serve_tasks', 'plan_meetings', 'answer_meetings', 'query', "
        "'broadcast'])",
    ),
    (
        "names a string",
        {"tokens": [{"token": PLANNER, "names": "worker-*"}]},
        "token 1 (token 1): names must be a list of non-empty strings",
    ),
    (
        "names with an empty string",
        {"tokens": [{"token": PLANNER, "names": ["worker-*", ""]}]},
        "token 1 (token 1): names must be a list of non-empty strings",
    ),
    (
        "names with a number",
        {"tokens": [{"token": PLANNER, "names": ["worker-*", 3]}]},
        "token 1 (token 1): names must be a list of non-empty strings",
    ),
    (
        "roles not a list",
        {"tokens": [{"token": PLANNER, "roles": {"admin": True}}]},
        "token 1 (token 1): roles must be a list of non-empty strings",
    ),
    (
        "send with an empty string",
        {"tokens": [{"token": PLANNER, "send": [""]}]},
        "token 1 (token 1): send must be a list of non-empty strings",
    ),
    (
        "allow a string",
        {"tokens": [{"token": PLANNER, "allow": "query"}]},
        "token 1 (token 1): allow must be a list of non-empty strings",
    ),
    (
        "user empty",
        {"tokens": [{"token": PLANNER, "user": ""}]},
        "token 1: user must be a non-empty string",
    ),
    (
        "user not a string",
        {"tokens": [{"token": PLANNER}, {"token": WORKER, "user": 7}]},
        "token 2: user must be a non-empty string",
    ),
]


@pytest.mark.parametrize(
    ("document", "message"),
    [pytest.param(document, message, id=case) for case, document, message in FORMAT_ERRORS],
)
def test_a_document_that_breaks_the_format_is_refused(document: Any, message: str) -> None:
    with pytest.raises(AuthFileError) as caught:
        Permissions.from_document(document)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("document", "message"),
    [pytest.param(document, message, id=case) for case, document, message in FORMAT_ERRORS],
)
def test_a_json_file_that_breaks_the_format_names_the_file_and_entry(
    tmp_path: Path, document: Any, message: str
) -> None:
    path = write(tmp_path, "auth.json", json.dumps(document))
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    text = str(caught.value)
    assert text == f"{path}: {message}"
    assert "\n" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", 'expected one key, "tokens", a list of tokens', id="empty file"),
        pytest.param(
            "tokens = []\n", "no tokens: a permissions file needs at least one", id="no entries"
        ),
        pytest.param(
            'user = "ops"\n', 'expected one key, "tokens", a list of tokens', id="no tokens"
        ),
        pytest.param('tokens = "x"\n', '"tokens" must be a list', id="tokens a string"),
        pytest.param("tokens = [1]\n", "token 1: expected a table", id="entry not a table"),
        pytest.param(
            f'[[tokens]]\ntoken = "{PLANNER}"\n\n[[tokens]]\nuser = "ops"\ntoken = "short"\n',
            "token 2 (ops): token must be a string of at least 16 characters",
            id="second token short",
        ),
        pytest.param(
            f'[[tokens]]\ntoken = "{PLANNER}"\nallow = ["submit_task"]\n',
            "token 1 (token 1): unknown permission(s) ['submit_task']",
            id="misspelt permission",
        ),
        pytest.param(
            f'[[tokens]]\nuser = "ops"\ntoken = "{PLANNER}"\nrole = ["admin"]\n',
            "token 1 (ops): unknown key(s) ['role']",
            id="misspelt key",
        ),
    ],
)
def test_a_toml_file_that_breaks_the_format_names_the_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "auth.toml", text)
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.toml", "[[tokens]\ntoken = 'x'\n")
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_invalid_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.json", '{"tokens": [{"token": "x",}]}')
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    assert str(caught.value).startswith(f"{path}: not valid JSON: ")
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    assert str(caught.value).startswith(f"{path}: cannot read it: ")
    assert "\n" not in str(caught.value)


def test_a_directory_is_refused_as_unreadable(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="cannot read it"):
        Permissions.load(tmp_path)


def test_a_file_that_is_not_utf8_is_refused_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_bytes(b'[[tokens]]\ntoken = "\xff\xfe not utf-8 at all"\n')
    with pytest.raises(AuthFileError) as caught:
        Permissions.load(path)
    assert str(caught.value).startswith(f"{path}: cannot read it: ")


def test_auth_file_error_is_a_value_error() -> None:
    assert issubclass(AuthFileError, ValueError)


# -- what a grant allows --------------------------------------------------------------

WORKERS = Grant("workers", names=("worker-*",), roles=("processor", "task_*"))


def test_a_name_outside_the_globs_is_refused() -> None:
    refusal = WORKERS.claim_refusal(uuid.uuid4().hex, "planner", "processor")
    assert refusal == (
        "not permitted: the name 'planner' (user 'workers' may claim names ['worker-*'])"
    )


def test_a_role_outside_the_globs_is_refused() -> None:
    refusal = WORKERS.claim_refusal(uuid.uuid4().hex, "worker-1", "admin")
    assert refusal == (
        "not permitted: the role 'admin' (user 'workers' may claim roles ['processor', 'task_*'])"
    )


def test_the_name_is_checked_before_the_role() -> None:
    refusal = WORKERS.claim_refusal(uuid.uuid4().hex, "planner", "admin")
    assert refusal is not None and refusal.startswith("not permitted: the name 'planner'")


def test_an_id_that_is_not_the_name_a_uuid_or_a_permitted_name_is_refused() -> None:
    refusal = WORKERS.claim_refusal("scheduler", "worker-1", "processor")
    assert refusal == (
        "not permitted: the id 'scheduler' (user 'workers' may claim names ['worker-*'])"
    )
    # Not a UUID: one hex digit short, or not hex at all.
    for agent_id in (uuid.uuid4().hex[:-1], "g" * 32, ""):
        refusal = WORKERS.claim_refusal(agent_id, "worker-1", "processor")
        assert refusal is not None and refusal.startswith("not permitted: the id"), agent_id


def test_a_generated_uuid_id_is_fine() -> None:
    assert WORKERS.claim_refusal(uuid.uuid4().hex, "worker-1", "processor") is None
    assert WORKERS.claim_refusal(str(uuid.uuid4()), "worker-1", "task_worker") is None
    assert WORKERS.claim_refusal(uuid.uuid4().hex.upper(), "worker-1", "processor") is None


def test_an_id_equal_to_the_name_is_fine() -> None:
    assert WORKERS.claim_refusal("worker-7", "worker-7", "processor") is None


def test_an_id_matching_the_name_globs_is_fine() -> None:
    assert WORKERS.claim_refusal("worker-id-3", "worker-1", "processor") is None


def test_the_default_grant_allows_any_claim() -> None:
    assert Grant("anyone").claim_refusal("any id", "any name", "any role") is None


def test_globs_are_case_sensitive() -> None:
    assert WORKERS.claim_refusal(uuid.uuid4().hex, "Worker-1", "processor") is not None
    assert WORKERS.claim_refusal(uuid.uuid4().hex, "WORKER-1", "processor") is not None
    assert WORKERS.claim_refusal(uuid.uuid4().hex, "worker-1", "Processor") is not None
    assert WORKERS.claim_refusal("Worker-id", "worker-1", "processor") is not None
    assert Grant("s", send=("member",)).send_refusal("Member") is not None


def test_globs_match_the_whole_value() -> None:
    grant = Grant("exact", names=("worker",), roles=("task_?",))
    assert grant.claim_refusal("worker", "worker", "task_a") is None
    assert grant.claim_refusal("worker", "worker-1", "task_a") is not None
    assert grant.claim_refusal("worker", "a-worker", "task_a") is not None
    assert grant.claim_refusal("worker", "worker", "task_ab") is not None
    assert grant.claim_refusal("worker", "worker", "task_") is not None


def test_refusal_names_the_permission_and_user() -> None:
    grant = Grant("planner", allow=frozenset({"submit_tasks", "query"}))
    assert grant.refusal("submit_tasks") is None and grant.refusal("query") is None
    assert grant.refusal("broadcast") == "not permitted: broadcast (user 'planner')"
    assert grant.refusal("serve_tasks") == "not permitted: serve_tasks (user 'planner')"
    assert grant.permits("query") and not grant.permits("broadcast")


def test_refusal_of_a_loaded_grant() -> None:
    grant = grant_of(Permissions.from_document(DOCUMENT), WORKER)
    assert grant.refusal("serve_tasks") == "not permitted: serve_tasks (user 'workers')"
    planner = grant_of(Permissions.from_document(DOCUMENT), PLANNER)
    assert planner.refusal("submit_tasks") is None
    assert planner.refusal("plan_meetings") == "not permitted: plan_meetings (user 'planner')"


def test_send_refusal_follows_the_send_globs() -> None:
    grant = Grant("clients", send=("member", "task_*"))
    assert grant.send_refusal("member") is None
    assert grant.send_refusal("task_worker") is None
    assert grant.send_refusal("admin") == "not permitted: send to role 'admin' (user 'clients')"
    assert grant.send_refusal("members") is not None
    assert Grant("anyone").send_refusal("admin") is None
    assert Grant("mute", send=()).send_refusal("member") == (
        "not permitted: send to role 'member' (user 'mute')"
    )


def test_grants_are_frozen() -> None:
    grant = Grant("x")
    with pytest.raises(AttributeError):
        grant.user = "y"  # type: ignore[misc]
