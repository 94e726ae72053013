#!/usr/bin/env python3
"""Build a large benchmark capture of C-STORE traffic at MTU 1500.

    python benchmarks/make_capture.py OUT.pcap --size-mb 400 [--concurrent 8]

Template: the real 2.4 MB C-STORE association recorded by the lab (captures/rotated,
storescu -> storescp across the veth, MTU 1500). Each copy gets its own client
address and port, sequence numbers and time, and copies run interleaved like
concurrent modalities. Every tenth flow is non-DICOM bulk traffic (the same frames
moved to port 8080 with the DICOM header bytes scrambled) so that the analyzer's
"drop payload of flows that are not DICOM" path is exercised too. Written streaming:
memory use does not depend on the size.
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "captures" / "rotated"


def template(paths: list[Path] | None = None) -> list[tuple[float, bytes]]:
    """Frames of the template association(s): TCP port 11112 only, time from 0."""
    frames: list[tuple[float, bytes]] = []
    for path in paths or sorted(TEMPLATE_DIR.iterdir()):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for ts, buf in dpkt.pcap.Reader(fh):
                tcp = getattr(dpkt.ethernet.Ethernet(buf).data, "data", None)
                if isinstance(tcp, dpkt.tcp.TCP) and 11112 in (tcp.sport, tcp.dport):
                    frames.append((float(ts), bytes(buf)))
    frames.sort(key=lambda f: f[0])
    t0 = frames[0][0]
    return [(ts - t0, buf) for ts, buf in frames]


def rewrite(
    buf: bytes, client_ip: bytes, client_port: int, seq_shift: int, server_port: int | None
) -> bytes:
    """Move one template frame to another client (and maybe server port); shift sequence numbers."""
    b = bytearray(buf)
    ihl = (b[14] & 0x0F) * 4
    t = 14 + ihl
    sport, dport, seq, ack = struct.unpack_from("!HHII", b, t)
    from_client = dport == 11112
    if from_client:
        b[26:30] = client_ip
        sport = client_port
        dport = server_port or dport
        seq = (seq + seq_shift) & 0xFFFFFFFF
    else:
        b[30:34] = client_ip
        dport = client_port
        sport = server_port or sport
        ack = (ack + seq_shift) & 0xFFFFFFFF if b[t + 13] & 0x10 else ack
    struct.pack_into("!HHII", b, t, sport, dport, seq, ack)
    if server_port is not None:  # not DICOM any more: scramble the first PDU header bytes
        payload = t + (b[t + 12] >> 4) * 4
        if len(b) > payload:
            b[payload] = 0x47
    return bytes(b)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--size-mb", type=float, default=400.0)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument(
        "--clients",
        type=int,
        default=0,
        help="distinct client addresses, reused in turn (0: a new address per association)",
    )
    ap.add_argument(
        "--template",
        type=Path,
        action="append",
        help="capture(s) whose port-11112 flows are copied (default: captures/rotated, one "
        "2.4 MB C-STORE; captures/dicom_lab.pcap gives many small associations)",
    )
    args = ap.parse_args()
    frames = template(args.template)
    per_copy = sum(16 + len(b) for _, b in frames)
    copies = max(1, int(args.size_mb * 1e6 // per_copy))
    span = frames[-1][0] + 0.5
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        base = 1_790_000_000.0
        for batch_start in range(0, copies, args.concurrent):
            batch = range(batch_start, min(copies, batch_start + args.concurrent))
            for idx, (ts, _) in enumerate(frames):
                for k in batch:
                    c = k % args.clients if args.clients else k
                    client_ip = bytes([10, 100 + (c >> 16) % 100, (c >> 8) & 0xFF, c & 0xFF])
                    port = 20000 + k % 40000
                    other = 8080 if k % 10 == 9 else None
                    buf = rewrite(frames[idx][1], client_ip, port, k * 7_777_777, other)
                    writer.writepkt(
                        buf, base + (batch_start // args.concurrent) * span + ts + k * 1e-6
                    )
    size = args.out.stat().st_size
    print(f"{args.out}: {size / 1e6:,.0f} MB, {copies} associations of {per_copy / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
