"""The bill archive: every file reconciliation read, kept as the channel gave it under its
SHA-256 (``<dir>/<first two hex digits>/<sha256>``), so a run can be shown and re-run on the
exact bytes. Writing is atomic (a temporary file renamed into place), and a file already there
is not written again."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Archived:
    path: Path
    sha256: str
    size: int


def _place(root: Path, digest: str) -> Path:
    return root / digest[:2] / digest


def store(root: Path, chunks: Iterable[bytes]) -> Archived:
    """Archive the bytes of ``chunks`` (streamed: memory holds one chunk)."""
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=root)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        target = _place(root, sha)
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            os.unlink(temp)
        else:
            os.replace(temp, target)
        return Archived(target, sha, size)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def store_file(root: Path, source: Path) -> Archived:
    with source.open("rb") as handle:
        return store(root, iter(lambda: handle.read(CHUNK), b""))


def path_of(root: Path, sha256: str) -> Path:
    return _place(root, sha256)


def copy_out(root: Path, sha256: str, target: Path) -> None:
    shutil.copyfile(path_of(root, sha256), target)
