"""Each package declares its public API once: __init__ re-exports the modules' __all__."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ceylon
import transport

PACKAGES = [transport, ceylon]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_init_exports_exist(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert hasattr(package, name), name


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_module_declares_all(package: object) -> None:
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    for info in pkgutil.walk_packages(package.__path__, prefix):  # type: ignore[attr-defined]
        if info.name.endswith("__main__"):
            continue  # running it is its only job
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
