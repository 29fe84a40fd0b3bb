"""Folders that hold keys, queues and texts are the owner's alone (mode 0700).

``mkdir(mode=0o700)`` only applies to a folder it creates: an instance folder made
earlier by hand, by an older release or under a loose umask keeps whatever mode it had.
So every start tightens them again.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE = 0o700
MIN_OVERWRITE = 32  # bytes of zeros written over even an empty file

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


def destroy_file(path: Path) -> bool:
    """Overwrite the file with zeros, sync it, unlink it and sync its folder (see README
    for what a filesystem or an SSD may still keep). True if there was one."""
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed below, before the unlink
    except FileNotFoundError:
        return False
    with handle:
        handle.write(bytes(max(MIN_OVERWRITE, os.fstat(handle.fileno()).st_size)))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink(missing_ok=True)
    fsync_folder(path.parent)
    return True


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
