"""Optional retention: dumpcap's own ring buffer of the raw DICOM packets, for forensics.

A second dumpcap writes ``DIR/dicom_*.pcapng`` (``-b filesize`` / ``-b files``) with a BPF for
the DICOM ports seen so far; when a new DICOM port appears it is restarted with the wider filter
(it continues the same ring). Packets of a new port before that restart are not retained.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from analyzer.errors import OutputError
from analyzer.live.dumpcap import Dumpcap


def ring_filter(user_bpf: str | None, ports: Iterable[int]) -> str:
    ports_bpf = " or ".join(f"tcp port {p}" for p in sorted(set(ports)))
    return f"({user_bpf}) and ({ports_bpf})" if user_bpf else ports_bpf


class Ring:
    def __init__(
        self, interfaces: list[str], bpf: str | None, directory: Path, files: int, megabytes: int
    ) -> None:
        self.interfaces = interfaces
        self.bpf = bpf
        self.dir = directory
        self.files = max(files, 2)
        self.kilobytes = max(megabytes, 1) * 1000
        self.proc: Dumpcap | None = None
        self.filter = ""
        self.restarts = 0
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.dir}: cannot create ring directory: {exc.strerror}") from None

    def start(self, ports: Iterable[int]) -> None:
        """(Re)start the ring dumpcap with a filter for ``ports``."""
        bpf = ring_filter(self.bpf, ports)
        if self.proc is not None and self.proc.running() and bpf == self.filter:
            return
        self.stop()
        self.filter = bpf
        extra = [
            "-b", f"filesize:{self.kilobytes}",
            "-b", f"files:{self.files}",
            "-w", str(self.dir / "dicom.pcapng"),
        ]  # fmt: skip
        self.proc = Dumpcap(self.interfaces, bpf, extra=extra, to_stdout=False)
        self.proc.start()
        self.restarts += 1

    def check(self) -> str | None:
        """None while the ring's dumpcap runs; else why it stopped (it is then restarted)."""
        proc = self.proc
        if proc is None or proc.running():
            return None
        why = proc.result().describe
        self.proc = None
        self.filter = ""
        return why

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
