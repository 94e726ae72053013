"""tshark as the reference for flows: frames and payload bytes per TCP conversation."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TSHARK = shutil.which("tshark")


@dataclass
class Conversation:
    first_ts: float
    endpoints: tuple[tuple[str, int], tuple[str, int]]
    frames: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    payload: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    retransmitted: int = 0


def conversations(path: Path | str, *, reassemble_ip: bool = True) -> list[Conversation]:
    """One entry per tshark ``tcp.stream``; frames and tcp.len summed per sending endpoint."""
    assert TSHARK is not None
    cmd = [
        TSHARK,
        "-n",
        "-r",
        str(path),
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-o",
        f"ip.defragment:{'TRUE' if reassemble_ip else 'FALSE'}",
        "-e",
        "tcp.stream",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "tcp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "ipv6.dst",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.len",
        "-e",
        "tcp.analysis.retransmission",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    convs: dict[int, Conversation] = {}
    for line in out.splitlines():
        stream, ts, s4, s6, sp, d4, d6, dp, length, retrans = line.split("|")
        src = (s4 or s6, int(sp))
        dst = (d4 or d6, int(dp))
        conv = convs.get(int(stream))
        if conv is None:
            conv = convs[int(stream)] = Conversation(float(ts), (src, dst))
        conv.frames[src] += 1
        conv.payload[src] += int(length or 0)
        if retrans:
            conv.retransmitted += 1
    return list(convs.values())


def conv_tcp_count(path: Path | str) -> int:
    """Number of conversations in ``tshark -q -z conv,tcp``."""
    assert TSHARK is not None
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-q", "-z", "conv,tcp"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(1 for line in out.splitlines() if "<->" in line)
