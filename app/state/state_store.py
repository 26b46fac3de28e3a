"""Reflex's saved page states, readable by this user only.

Without REFLEX_REDIS_URL, Reflex pickles every tab's state into its states folder
(`.states/`, or REFLEX_STATES_WORKDIR), created with the default umask (0755 folder, 0644
files). The states hold no secret (app/state/browser_session.py), but they do hold who is
signed in and what they read, so they get the same modes as the database.
"""

from __future__ import annotations

import logging

from reflex.utils.prerequisites import get_states_dir

logger = logging.getLogger(__name__)


def keep_state_store_private() -> None:
    """The states folder 0700 and the states already in it 0600. New ones are 0600 through
    the process's umask (app/runtime.py lifespan)."""
    folder = get_states_dir()
    if not folder.is_dir():  # states in Redis, or none written yet
        return
    try:
        folder.chmod(0o700)
        for state in folder.glob("*.pkl"):
            state.chmod(0o600)
    except OSError as exc:
        logger.warning("could not make the saved page states private (%s)", exc)
