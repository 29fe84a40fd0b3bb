"""Folders that hold keys, queues and texts are the owner's alone (mode 0700).

``mkdir(mode=0o700)`` only applies to a folder it creates: an instance folder made
earlier by hand, by an older release or under a loose umask keeps whatever mode it had.
So every start tightens them again.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

PRIVATE = 0o700

log = logging.getLogger(__name__)


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, and make it the owner's alone."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE)
    tighten(path)
    return path


def tighten(path: Path) -> None:
    """Take group and others' access away from an existing folder, if they have any."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & PRIVATE)
    except PermissionError:  # not ours: say so, the deployment must fix it
        log.warning("%s is not ours to make private (mode %o)", path, mode)
