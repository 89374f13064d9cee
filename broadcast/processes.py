"""Whether a process on this machine is still running: how a dead run's leftovers are told from a live run's."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while process ``pid`` exists; a process of another user counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
