#!/usr/bin/env python3
"""Derive link-type and damage variants from the real lab captures.

Linux gives no VLAN, BSD loopback or raw-IP interfaces in this lab, so those link
types are made by re-encapsulating the real Ethernet frames of ``dicom_lab.pcap`` and
``ipv6_lab.pcap`` (packet contents and timing untouched). The damage variants cut or
drop records of a real capture the way a full disk or a lossy span port would.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
Packet = tuple[float, bytes]


def read(path: Path) -> list[Packet]:
    with open(path, "rb") as fh:
        return [(float(ts), bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]


def write(path: Path, packets: Iterable[Packet], linktype: int, order: str = "<") -> None:
    """A classic microsecond pcap in the given byte order."""
    with open(path, "wb") as fh:
        fh.write(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for ts, buf in packets:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            fh.write(struct.pack(order + "IIII", sec, usec, len(buf), len(buf)))
            fh.write(buf)
    path.chmod(0o644)


def retag(frames: list[Packet], tags: list[tuple[int, int]]) -> list[Packet]:
    """Insert VLAN tags (TPID, VLAN id), outermost first, after the MAC addresses."""
    out = []
    for ts, buf in frames:
        inserted = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags)
        out.append((ts, buf[:12] + inserted + buf[12:]))
    return out


def strip_ethernet(frames: list[Packet], prefix: Callable[[bytes], bytes]) -> list[Packet]:
    return [
        (ts, prefix(buf[14:]) + buf[14:])
        for ts, buf in frames
        if buf[12:14] in (b"\x08\x00", b"\x86\xdd")
    ]


def is_data_to(buf: bytes, port: int) -> bool:
    """An IPv4 TCP segment with payload sent to ``port``."""
    if buf[12:14] != b"\x08\x00" or buf[23] != 6:
        return False
    ihl = (buf[14] & 0x0F) * 4
    t = 14 + ihl
    total = struct.unpack("!H", buf[16:18])[0]
    doff = (buf[t + 12] >> 4) * 4
    return struct.unpack("!H", buf[t + 2 : t + 4])[0] == port and total - ihl - doff > 0


def main() -> None:
    v4 = read(HERE / "dicom_lab.pcap")
    v6 = read(HERE / "ipv6_lab.pcap")
    write(HERE / "vlan_8021q.pcap", retag(v4, [(0x8100, 100)]), 1)
    write(HERE / "qinq.pcap", retag(v4, [(0x88A8, 200), (0x8100, 100)]), 1)
    write(HERE / "raw_ip.pcap", strip_ethernet(v4 + v6, lambda ip: b""), 101)
    # DLT_NULL: AF in the capturing host's order (little endian here); AF_INET6 is 30 on macOS
    write(HERE / "bsd_null.pcap", strip_ethernet(v4, lambda ip: struct.pack("<I", 2)), 0)
    # DLT_LOOP: AF in network order; AF_INET6 is 24 on OpenBSD
    write(HERE / "bsd_loop.pcap", strip_ethernet(v6, lambda ip: struct.pack(">I", 24)), 108)
    write(HERE / "bigendian.pcap", v4, 1, order=">")
    # A capture whose writer died mid-record: keep 60 % of the file, cut inside a record.
    raw = (HERE / "dicom_lab.pcap").read_bytes()
    cut = HERE / "truncated_tail.pcap"
    cut.write_bytes(raw[: int(len(raw) * 0.6) | 1])
    cut.chmod(0o644)
    # A span port that lost one segment: the third client data segment of the storescu run.
    data_segments = [i for i, (_, buf) in enumerate(v4) if is_data_to(buf, 11112)]
    lost = data_segments[len(data_segments) // 2]
    write(HERE / "lost_segment.pcap", [p for i, p in enumerate(v4) if i != lost], 1)
    # A capture started inside an association: the 256-byte-PDU C-STORE on port 11118 from its
    # 12th frame on (handshake, A-ASSOCIATE and the command are gone, the dataset is under way).
    tiny = read(HERE / "tiny_pdu.pcap")
    write(HERE / "midstream.pcap", tiny[11:], 1)


if __name__ == "__main__":
    main()
