"""Ceylon: a networked, peer-to-peer multi-agent runtime over TCP.

The agent API is built on `transport`; as a library it keeps its logging off
(`logger.enable("ceylon")` turns it on), as loguru recommends for libraries.
"""

from __future__ import annotations

from loguru import logger

__all__ = ["__version__"]

__version__ = "0.1.0"

logger.disable("ceylon")
