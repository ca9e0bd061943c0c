"""Logging set-up for the command line (the library itself leaves loguru alone)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["setup_cli_logging"]

_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[who]}</cyan> | {message}"
)


def _who(record: Record) -> bool:
    extra = record["extra"]
    extra["who"] = extra.get("agent") or extra.get("peer") or record["name"]
    return True


def setup_cli_logging(verbose: bool = False) -> None:
    """Log ceylon and transport to stderr: INFO, or DEBUG when `verbose`."""
    logger.remove()
    # diagnose=False: a traceback never shows local values (message contents).
    logger.add(
        sys.stderr,
        level="DEBUG" if verbose else "INFO",
        format=_FORMAT,
        filter=_who,
        diagnose=False,
    )
    logger.enable("ceylon")
    logger.enable("transport")
