"""Publish a finished folder or file under its final name in one rename, so readers never see half of it.

Every stage that writes a folder (an export, an eval report, the converted-model and 4-bit caches)
builds it under a temporary name in the same parent folder and publishes it here. A rename within
one folder is atomic; a folder that already exists is moved aside first and restored if the swap
fails, so the final name always holds one complete version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish(staged: Path, final: Path) -> Path:
    """Move the finished `staged` path to `final`, replacing an earlier version of it."""
    if not (final.is_dir() and not final.is_symlink()):
        os.replace(staged, final)  # a file, or nothing yet: os.replace is atomic
        return final
    # os.replace cannot replace a non-empty folder: move the old one aside, swap, then drop it.
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".old"))
    os.replace(final, old / final.name)
    try:
        os.replace(staged, final)
    except BaseException:
        os.replace(old / final.name, final)  # put the complete earlier version back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return final


def publish_once(staged: Path, final: Path, complete: Callable[[Path], bool]) -> Path:
    """Publish a cache entry that any process may build: the first rename wins, and a process that
    lost the race to an entry that is `complete` keeps that one (its own copy is left to the caller)."""
    try:
        os.rename(staged, final)
    except OSError:
        if not complete(final):
            raise
    return final
