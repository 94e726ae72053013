"""Wireshark's dumpcap as the capture process: it holds the capture privilege, we only read
its pcapng stream from a pipe.

dumpcap reports its own and the kernel's drop counters when a capture ends, on stderr::

    Packets received/dropped on interface 'Loopback: lo': 120/3 (pcap:3/dumpcap:0/flushed:0/ps_ifdrop:0) (97.5%)

``received`` and ``dropped`` are parsed from that line each time a dumpcap run ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from analyzer.errors import InputError

DROPS = re.compile(
    r"Packets received/dropped on interface '(?P<iface>[^']*)': (?P<recv>\d+)/(?P<drop>\d+)"
    r"(?: \(pcap:(?P<pcap>\d+)/dumpcap:(?P<dumpcap>\d+)/flushed:(?P<flushed>\d+)"
    r"(?:/ps_ifdrop:(?P<ifdrop>\d+))?\))?"
)


class CaptureError(InputError):
    """dumpcap cannot capture: unknown interface, no permission, bad filter."""


def find_dumpcap() -> str:
    path = shutil.which("dumpcap") or (
        "/usr/bin/dumpcap" if os.access("/usr/bin/dumpcap", os.X_OK) else None
    )
    if path is None:
        raise CaptureError(
            "dumpcap not found: install Wireshark's dumpcap (Debian: apt-get install wireshark-common)"
        )
    return path


def list_interfaces(dumpcap: str) -> list[str]:
    """Interface names as dumpcap sees them (``dumpcap -D``: ``1. eth0 (description)``)."""
    done = subprocess.run([dumpcap, "-D"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise CaptureError(f"dumpcap cannot list interfaces: {_first_error(done.stderr)}")
    names = []
    for line in done.stdout.splitlines():
        m = re.match(r"\s*\d+\.\s+(\S+)", line)
        if m:
            names.append(m.group(1))
    return names


def _first_error(stderr: str) -> str:
    """The line of dumpcap's stderr that says what went wrong, made one line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("dumpcap: "):
            text = line.removeprefix("dumpcap: ")
            if i + 1 < len(lines) and lines[i + 1].startswith("("):
                text += " " + lines[i + 1]
            return text
    useful = [ln for ln in lines if not ln.startswith(("Capturing on", "File:"))]
    return useful[0] if useful else "dumpcap failed without a message"


@dataclass(slots=True)
class DropReport:
    interface: str
    received: int
    dropped: int
    pcap: int = 0
    dumpcap: int = 0
    ifdrop: int = 0


@dataclass(slots=True)
class RunResult:
    """How one dumpcap run ended."""

    returncode: int | None
    error: str
    drops: list[DropReport] = field(default_factory=list)

    @property
    def describe(self) -> str:
        rc = self.returncode
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with status {rc}"
        return f"dumpcap {how}" + (f": {self.error}" if self.error else "")


class Dumpcap:
    """One dumpcap process writing pcapng to our pipe (``stdout``)."""

    def __init__(
        self,
        interfaces: Sequence[str],
        bpf: str | None = None,
        extra: Sequence[str] = (),
        to_stdout: bool = True,
        dumpcap: str | None = None,
        buffer_mb: int | None = None,
    ) -> None:
        """``buffer_mb``: the kernel capture buffer per interface (dumpcap ``-B``), which
        absorbs bursts while the analyzer catches up; None: dumpcap's default (2 MB)."""
        self.exe = dumpcap or find_dumpcap()
        cmd = [self.exe, "-q"]
        for iface in interfaces:
            cmd += ["-i", iface]
            if bpf:
                cmd += ["-f", bpf]
            if buffer_mb:
                cmd += ["-B", str(buffer_mb)]
        cmd += list(extra)
        if to_stdout:
            cmd += ["-w", "-"]
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=50)
        self._stderr_thread: threading.Thread | None = None

    def start(self) -> IO[bytes] | None:
        # A session of its own: a terminal's Ctrl-C reaches us, and we stop dumpcap ourselves.
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
        self._stderr.clear()
        stderr = self.proc.stderr
        assert stderr is not None
        self._stderr_thread = threading.Thread(
            target=self._drain, args=(stderr,), name="dumpcap-stderr", daemon=True
        )
        self._stderr_thread.start()
        return self.proc.stdout

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Ask dumpcap to finish (it then writes its statistics and closes the stream)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass

    def result(self, timeout: float = 10.0) -> RunResult:
        """Wait for the process to end; its exit status, error line and drop counters."""
        proc = self.proc
        assert proc is not None
        try:
            rc: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout)
        text = "\n".join(self._stderr)
        drops = [
            DropReport(
                m["iface"],
                int(m["recv"]),
                int(m["drop"]),
                int(m["pcap"] or 0),
                int(m["dumpcap"] or 0),
                int(m["ifdrop"] or 0),
            )
            for m in DROPS.finditer(text)
        ]
        error = "" if rc == 0 else _first_error(text) if "dumpcap:" in text else ""
        return RunResult(rc, error, drops)
