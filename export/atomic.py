"""Atomic publication of an export: build under a temporary name in the target folder, rename at the end.

A rename within one folder is atomic, so the final name only ever holds a complete, verified export.
An interrupted export (error, Ctrl-C, a failed stage) leaves no file under the final name and removes
its temporary files; a failed verification keeps the output as NAME.failed for inspection. A process
that dies outright (killed, or crashed in native code) cannot clean up: its temporary names carry its
process id, and the next export of the same name removes those whose process is gone (`remove_stale`).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lwdpo_edge.publish import publish

FAILED_SUFFIX = ".failed"
TEMPORARY_SUFFIXES = (".partial", ".work", ".old")


def temporary_prefix(final: Path) -> str:
    """.NAME.PID. : the owner's process id, so a later export can tell a dead export's leftovers."""
    return f".{final.name}.{os.getpid()}."


def owner_alive(path: Path, final: Path) -> bool:
    """Whether the process named in a temporary path (see temporary_prefix) still runs."""
    pid = path.name[len(final.name) + 2:].split(".", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def remove_stale(final: Path) -> list[Path]:
    """Remove the temporary files and folders of earlier exports of `final` whose process is gone."""
    stale = [path for path in Path(final.parent).glob(f".{glob.escape(final.name)}.*")
             if path.name.endswith(TEMPORARY_SUFFIXES) and not owner_alive(path, final)]
    for path in stale:
        remove(path)
    return stale


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staging(final: Path, is_dir: bool) -> Iterator[Path]:
    """A temporary path next to `final` (created empty); removed on exit unless published or kept."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    if is_dir:
        path = Path(tempfile.mkdtemp(dir=final.parent, prefix=temporary_prefix(final), suffix=".partial"))
        path.chmod(0o755)  # mkdtemp makes it private; an exported folder should read like any other
    else:
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=temporary_prefix(final), suffix=".partial")
        os.close(fd)
        path = Path(name)
        path.chmod(0o644)
    try:
        yield path
    finally:
        if path.exists():
            remove(path)


@contextmanager
def workdir(final: Path) -> Iterator[Path]:
    """A scratch folder beside `final` (same disk: intermediates can be as large as the model)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    path = Path(tempfile.mkdtemp(dir=final.parent, prefix=temporary_prefix(final), suffix=".work"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def keep_failed(path: Path, final: Path) -> Path:
    """Publish a failed export as NAME.failed (never under the final name)."""
    return publish(path, final.with_name(final.name + FAILED_SUFFIX))
