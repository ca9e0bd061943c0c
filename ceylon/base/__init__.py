"""The agent and playground base classes (``ceylon.base.playground`` is a tutorial path)."""

from __future__ import annotations

from .agent import Admin, BaseAgent, Worker, register
from .playground import BasePlayGround

__all__ = ["Admin", "BaseAgent", "BasePlayGround", "Worker", "register"]
