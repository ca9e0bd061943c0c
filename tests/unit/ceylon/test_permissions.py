"""The permissions file: its format, its defaults, and what a grant allows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ceylon.permissions import PERMISSIONS, AuthFileError, Grant, Permissions
from transport.handshake import key_id

TOKEN = "a-token-of-twenty-chars"
OTHER = "another-token-of-twenty"

TOML = f"""
[[tokens]]
user = "workers"
token = "{TOKEN}"
names = ["worker-*"]
roles = ["processor"]
allow = ["serve_tasks"]
send = []

[[tokens]]
token = "{OTHER}"
"""


def test_toml_and_json_give_the_same_grants(tmp_path: Path) -> None:
    (tmp_path / "auth.toml").write_text(TOML)
    document = {"tokens": [
        {"user": "workers", "token": TOKEN, "names": ["worker-*"], "roles": ["processor"],
         "allow": ["serve_tasks"], "send": []},
        {"token": OTHER},
    ]}  # fmt: skip
    (tmp_path / "auth.json").write_text(json.dumps(document))
    for name in ("auth.toml", "auth.json"):
        auth = Permissions.load(tmp_path / name)
        assert auth.tokens == (TOKEN, OTHER) and len(auth) == 2
        assert auth.grant(key_id(TOKEN.encode())) == Grant(
            "workers", ("worker-*",), ("processor",), frozenset({"serve_tasks"}), ()
        )
        assert auth.grant(key_id(OTHER.encode())) == Grant("token 2")  # every default
        assert auth.grant(key_id(b"not in the file")) is None


def test_allow_star_is_everything_and_empty_is_nothing() -> None:
    def grant(allow: list[str]) -> Grant:
        auth = Permissions.from_document({"tokens": [{"token": TOKEN, "allow": allow}]})
        found = auth.grant(key_id(TOKEN.encode()))
        assert found is not None
        return found

    assert grant(["*"]).allow == frozenset(PERMISSIONS)
    assert grant([]).allow == frozenset()
    assert grant([]).refusal("query") == "not permitted: query (user 'token 1')"
    assert grant(["query"]).refusal("query") is None


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ([], 'expected one key, "tokens"'),
        ({"tokens": [], "extra": 1}, 'expected one key, "tokens"'),
        ({"tokens": {}}, '"tokens" must be a list'),
        ({"tokens": []}, "no tokens"),
        ({"tokens": ["x"]}, "token 1: expected a table"),
        ({"tokens": [{"token": TOKEN, "colour": "red"}]},
         "token 1 (token 1): unknown key(s) ['colour']"),
        ({"tokens": [{"token": "short"}]}, "token must be a string of at least 16 characters"),
        ({"tokens": [{}]}, "token must be a string of at least 16 characters"),
        ({"tokens": [{"token": TOKEN}, {"token": TOKEN, "user": "b"}]},
         "token 2 (b): the same token is given twice"),
        ({"tokens": [{"token": TOKEN, "allow": ["fly"]}]}, "unknown permission(s) ['fly']"),
        ({"tokens": [{"token": TOKEN, "names": "worker-*"}]}, "names must be a list of"),
        ({"tokens": [{"token": TOKEN, "roles": [""]}]}, "roles must be a list of"),
        ({"tokens": [{"token": TOKEN, "user": ""}]}, "user must be a non-empty string"),
    ],
)  # fmt: skip
def test_a_document_that_breaks_the_format_is_refused(document: object, error: str) -> None:
    with pytest.raises(AuthFileError) as caught:
        Permissions.from_document(document)
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_files_that_cannot_be_read_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match=r"missing\.toml: cannot read it"):
        Permissions.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[tokens]\n")
    with pytest.raises(AuthFileError, match=r"bad\.toml: not valid TOML"):
        Permissions.load(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AuthFileError, match=r"bad\.json: not valid JSON"):
        Permissions.load(tmp_path / "bad.json")
    (tmp_path / "short.toml").write_text('[[tokens]]\ntoken = "x"\n')
    with pytest.raises(AuthFileError, match=r"short\.toml: token 1 \(token 1\): token must"):
        Permissions.load(tmp_path / "short.toml")


def test_claims_are_matched_against_the_globs_case_sensitively() -> None:
    grant = Grant("workers", ("worker-*",), ("processor",))
    assert grant.claim_refusal(uuid.uuid4().hex, "worker-1", "processor") is None
    assert grant.claim_refusal(str(uuid.uuid4()), "worker-1", "processor") is None
    assert grant.claim_refusal("worker-1", "worker-1", "processor") is None
    assert grant.claim_refusal("worker-id", "worker-1", "processor") is None
    refusal = grant.claim_refusal(uuid.uuid4().hex, "Worker-1", "processor")
    assert refusal == (
        "not permitted: the name 'Worker-1' (user 'workers' may claim names ['worker-*'])"
    )
    refusal = grant.claim_refusal(uuid.uuid4().hex, "worker-1", "admin")
    assert refusal is not None and refusal.startswith("not permitted: the role 'admin'")
    refusal = grant.claim_refusal("scheduler", "worker-1", "processor")
    assert refusal is not None and refusal.startswith("not permitted: the id 'scheduler'")


def test_sends_are_matched_against_the_send_globs() -> None:
    grant = Grant("clients", send=("member", "task_*"))
    assert grant.send_refusal("member") is None and grant.send_refusal("task_worker") is None
    assert grant.send_refusal("admin") == "not permitted: send to role 'admin' (user 'clients')"
    assert Grant("mute", send=()).send_refusal("member") is not None
