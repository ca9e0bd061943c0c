"""Static guarantees: the sans-I/O core does no I/O, and nothing received is executed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SANS_IO = ["framing", "codec", "wire", "handshake", "protocol"]
# Every module a received byte passes through, from the socket to a decoded object.
RECEIVE_PATH = [*SANS_IO, "connection", "server", "client", "errors"]
FORBIDDEN_IO = {"asyncio", "socket", "ssl", "time", "selectors", "select", "datetime.now"}
FORBIDDEN_EXEC_IMPORTS = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "importlib",
    "runpy",
    "code",
    "codeop",
}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "loads"}


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def parse(module: str) -> ast.AST:
    return ast.parse((ROOT / "transport" / f"{module}.py").read_text())


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_modules_import_no_io_or_clock(module: str) -> None:
    bad = imported_modules(parse(module)) & FORBIDDEN_IO
    assert not bad, f"transport/{module}.py imports {bad}"


@pytest.mark.parametrize("module", RECEIVE_PATH)
def test_receive_path_has_no_pickle_eval_exec_or_dynamic_import(module: str) -> None:
    tree = parse(module)
    bad_imports = imported_modules(tree) & FORBIDDEN_EXEC_IMPORTS
    assert not bad_imports, f"transport/{module}.py imports {bad_imports}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else None)
            )
            assert name not in FORBIDDEN_CALLS, (
                f"transport/{module}.py:{node.lineno} calls {name}()"
            )


def test_the_checks_would_catch_a_violation() -> None:
    tree = ast.parse("import pickle\nfrom importlib import import_module\neval('1')\n")
    assert imported_modules(tree) >= {"pickle", "importlib"}
    calls = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    assert "eval" in calls
