"""Test-only crash injection: named points where the crash-safety tests kill the process.

Product code calls :func:`fault_point` at the moments a kill would hurt most (mid-training, while a
record or a report is half written); unset, it does nothing. Kept apart from the run store so that
training and reporting can offer their points without importing it.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """Test-only crash injection: with ``GREENLADDER_FAULT=<name>`` the process dies here by SIGKILL.

    The crash-safety tests use it to kill ``advise`` at named points (``baseline``, ``train:<run_id>``,
    ``ledger:<run_id>``, ``report:<file>``) and check that a rerun loses nothing. Unset, it does nothing.
    """
    if os.environ.get("GREENLADDER_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
