"""The stream error boundary for what is unexpected: crash the worker loudly, commit nothing.

Expected bad input never reaches here (it is dead-lettered where it is decoded). Anything else is
a bug or a broken dependency, and Faust's default supervisor would restart the agent in a loop
while the worker looks alive (shared/FAUST-NOTES.md: agents that die quietly). Exiting with a
distinct code hands the restart to the process supervisor; unacked input is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

EXIT_AGENT_CRASHED = 70


@contextmanager
def crash_on_unexpected(agent: str) -> Iterator[None]:
    """Around an agent's loop: an unexpected exception ends the process with exit code 70."""
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:
        logger.critical("agent crashed: exiting the worker", exc_info=True, extra={"agent": agent})
        logging.shutdown()
        os._exit(EXIT_AGENT_CRASHED)
