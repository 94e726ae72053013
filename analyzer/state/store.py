"""The state directory: ``DIR/baseline.json``, versioned, written atomically.

    {"format": "dicom-analyzer baseline", "version": 1, "written_by": "...", "updated": "...",
     "runs": N,
     "hosts":   {"10.1.2.3": {"first_seen": T, "last_seen": T, "roles": ["scu"],
                              "ae_titles": ["CT01"]}},
     "ae_titles": {"CT01": {"host": "10.1.2.3", "first_seen": T, "last_seen": T}},
     "versions": [["10.1.2.3", "CT01", "OFFIS_DCMTK_362", T]],
     "move_destinations": {"ARCHIVE": T},
     "peers": [["10.1.2.3", "10.1.2.9", 104, T]]}

Saving takes an exclusive lock on ``DIR/.lock``, reads the file again and merges it with what
this process knows (a live sensor and a ``baseline`` run may share a directory), then writes a
hidden temporary file, syncs it and renames it over the old one. A file that does not parse,
is not ours, or was written by a newer format is a one-line error, never a silent reset.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analyzer import __version__
from analyzer.errors import AnalyzerError
from analyzer.state.baseline import Baseline, Host, TitleHome, Version

FORMAT = "dicom-analyzer baseline"
VERSION = 1
FILE = "baseline.json"
MAX_FILE_BYTES = 256 << 20


class StateError(AnalyzerError):
    """A state directory or file that cannot be used."""

    exit_code = 2


class _Bad(Exception):
    pass


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad("a time is not a number")
    return float(v)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad("a name is not a string")
    return v


def _texts(v: Any) -> set[str]:
    if not isinstance(v, list):
        raise _Bad("a list is not a list")
    return {_text(x) for x in v}


def _table(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key, kind())
    if not isinstance(value, kind):
        raise _Bad(f"'{key}' is not a{'n object' if kind is dict else ' list'}")
    return value


def from_document(doc: Any, where: str, max_hosts: int, max_entries: int) -> Baseline:
    """The baseline a parsed JSON document holds (``StateError`` when it is not one)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateError(f"{where}: not a dicom-analyzer baseline (wrong or missing 'format')")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateError(f"{where}: corrupt baseline: 'version' is not a number")
    if version > VERSION:
        raise StateError(
            f"{where}: written by a newer dicom-analyzer (baseline format {version}; "
            f"this version reads {VERSION})"
        )
    b = Baseline(max_hosts, max_entries)
    try:
        runs = doc.get("runs", 0)
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 0:
            raise _Bad("'runs' is not a count")
        b.runs = runs
        for addr, h in _table(doc, "hosts", dict).items():
            if not isinstance(h, dict):
                raise _Bad("a host is not an object")
            b.hosts[addr] = Host(
                _num(h.get("first_seen")),
                _num(h.get("last_seen")),
                _texts(h.get("roles", [])),
                _texts(h.get("ae_titles", [])),
            )
        for title, t in _table(doc, "ae_titles", dict).items():
            if not isinstance(t, dict):
                raise _Bad("an AE title entry is not an object")
            b.ae_titles[title] = TitleHome(
                _text(t.get("host")), _num(t.get("first_seen")), _num(t.get("last_seen"))
            )
        for row in _table(doc, "versions", list):
            if not isinstance(row, list) or len(row) != 4:
                raise _Bad("a version entry is not [host, title, version, time]")
            b.versions[(_text(row[0]), _text(row[1]))] = Version(_text(row[2]), _num(row[3]))
        for title, ts in _table(doc, "move_destinations", dict).items():
            b.move_destinations[title] = _num(ts)
        for row in _table(doc, "peers", list):
            if not isinstance(row, list) or len(row) != 4 or not isinstance(row[2], int):
                raise _Bad("a peer entry is not [client, server, port, time]")
            b.peers[(_text(row[0]), _text(row[1]), row[2])] = _num(row[3])
    except _Bad as exc:
        raise StateError(f"{where}: corrupt baseline: {exc}") from None
    b.bound()
    return b


def to_document(b: Baseline) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "written_by": f"dicom-analyzer {__version__}",
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": b.runs,
        "hosts": {
            addr: {
                "first_seen": h.first_seen,
                "last_seen": h.last_seen,
                "roles": sorted(h.roles),
                "ae_titles": sorted(h.ae_titles),
            }
            for addr, h in sorted(b.hosts.items())
        },
        "ae_titles": {
            title: {"host": t.host, "first_seen": t.first_seen, "last_seen": t.last_seen}
            for title, t in sorted(b.ae_titles.items())
        },
        "versions": [[h, t, v.version, v.last_seen] for (h, t), v in sorted(b.versions.items())],
        "move_destinations": dict(sorted(b.move_destinations.items())),
        "peers": [[c, s, p, ts] for (c, s, p), ts in sorted(b.peers.items())],
    }


class StateDir:
    """One state directory (created 0700 when missing)."""

    def __init__(self, path: Path, max_hosts: int, max_entries: int) -> None:
        self.path = path
        self.file = path / FILE
        self.max_hosts = max_hosts
        self.max_entries = max_entries
        self._counted = False

    def _prepare(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StateError(f"{self.path}: the state directory is a file")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot create the state directory: {exc.strerror}"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare()
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot lock the state: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> Baseline | None:
        try:
            with open(self.file, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.file}: cannot read the baseline: {exc.strerror}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise StateError(
                f"{self.file}: corrupt baseline: larger than {MAX_FILE_BYTES >> 20} MB"
            )
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise StateError(f"{self.file}: corrupt baseline: not JSON ({exc})") from None
        return from_document(doc, str(self.file), self.max_hosts, self.max_entries)

    def load(self) -> Baseline:
        """The stored baseline, or an empty one for a new directory."""
        with self._locked():
            b = self._read()
        if b is None:
            return Baseline(self.max_hosts, self.max_entries)
        b.learned_before = b.runs > 0
        return b

    def save(self, b: Baseline) -> None:
        """Merge ``b`` with the stored baseline and write the result (``b`` takes it too).
        The run (or live session) is counted once, at its first save."""
        with self._locked():
            stored = self._read()
            if stored is not None:
                b.merge(stored)
            if not self._counted:
                b.runs += 1
                self._counted = True
            text = json.dumps(to_document(b), separators=(",", ":"))
            tmp = self.path / f".{FILE}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.file)
                dir_fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError as exc:
                raise StateError(
                    f"{self.file}: cannot write the baseline: {exc.strerror}"
                ) from None
