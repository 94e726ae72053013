"""One exported object on disk: written under a hidden name as its bytes arrive, renamed when
it ends. Memory per object is one flush buffer; no file descriptor stays open between flushes
(thousands of objects may be in flight at once on a busy capture)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

FLUSH = 1 << 16
SAFE_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def safe_stem(uid: str | None) -> str:
    """A file name part from a UID off the wire: the UID when it is one (digits and dots, at
    most 64), else a hash of it; never a path."""
    if uid and len(uid) <= 64 and SAFE_UID.fullmatch(uid):
        return uid
    if not uid:
        return "unknown"
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:24]


class ObjectFile:
    """``write`` dataset bytes; ``close`` renames the file and returns (path, bytes, sha256).
    ``head``: the bytes before the dataset, built from the first dataset bytes (the transfer
    syntax may have to be guessed from them)."""

    __slots__ = ("directory", "stem", "head", "tmp", "buf", "sha", "size", "opened")

    def __init__(self, directory: Path, stem: str, head: Callable[[bytes], bytes]) -> None:
        self.directory = directory
        self.stem = stem
        self.head: Callable[[bytes], bytes] | None = head
        self.tmp = directory / f".{stem}.tmp"
        self.buf = bytearray()
        self.sha = hashlib.sha256()
        self.size = 0
        self.opened = False

    def write(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.head is not None:
            self.buf[0:0] = self.head(bytes(self.buf[:16]))
            self.head = None
        if not self.buf:
            return
        flags = (
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | (0 if self.opened else os.O_EXCL | os.O_TRUNC)
        )
        if not self.opened and self.tmp.exists():
            self.tmp.unlink()
        fd = os.open(self.tmp, flags, 0o600)
        try:
            view = memoryview(self.buf)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.opened = True
        self.sha.update(self.buf)
        self.size += len(self.buf)
        self.buf = bytearray()

    def close(self, suffix: str, mode: int = 0o600) -> tuple[Path, int, str]:
        """Write what is left and give the file its final name (never over another file)."""
        self.flush()
        if not self.opened:
            os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        path = self.directory / f"{self.stem}{suffix}"
        n = 1
        while path.exists():
            n += 1
            path = self.directory / f"{self.stem}-{n}{suffix}"
        os.replace(self.tmp, path)
        os.chmod(path, mode)
        return path, self.size, self.sha.hexdigest()

    def discard(self) -> None:
        self.buf = bytearray()
        if self.opened:
            self.tmp.unlink(missing_ok=True)
