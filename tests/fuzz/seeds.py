"""Starting corpora: real bytes in each target's input format."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"


def _conversation() -> list[tuple[int, bytes]]:
    """A whole association of pynetdicom-encoded PDUs: (direction, bytes)."""
    from tests.dicom import fixtures as fx

    return [
        (0, fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS),
        (1, fx.A_ASSOCIATE_AC_PLAIN),
        (0, fx.c_echo_rq()),
        (1, fx.c_echo_rsp()),
        (0, fx.c_store_rq(max_pdu=512)),
        (0, fx.c_find_rq()),
        (1, fx.c_move_rsp(3, 0xFF00, 2, 1)),
        (0, fx.A_RELEASE_RQ_PDU),
        (1, fx.A_RELEASE_RP_PDU),
    ]


def dicom_seeds() -> list[bytes]:
    """``targets.dicom`` format: a flag byte, then chunks of (control, length / 8, bytes)."""
    out = []
    for chunk in (2040, 64, 8):
        body = b""
        for direction, pdu in _conversation():
            for i in range(0, len(pdu), chunk):
                piece = pdu[i : i + chunk]
                piece += b"\x00" * (-len(piece) % 8)  # lengths count in 8-byte units
                body += bytes([direction, len(piece) // 8]) + piece
        out.append(b"\x00" + body)
    return out


def capture_seeds() -> list[bytes]:
    return [p.read_bytes()[:16384] for p in sorted(CAPTURES.glob("*.pcap*"))]


def pipeline_seeds() -> list[bytes]:
    """``targets.frames`` format: a mode byte, then (flags, length, step) + payload records:
    a handshake, the conversation in segments, the closing FINs."""
    out = []
    for segment in (1448, 200):
        recs = [struct.pack(">BHB", 0x14, 0, 0), struct.pack(">BHB", 0x05, 0, 0)]  # SYN, SYN-ACK
        recs.append(struct.pack(">BHB", 0x00, 0, 0))  # ACK
        for direction, pdu in _conversation():
            for i in range(0, len(pdu), segment):
                piece = pdu[i : i + segment]
                recs.append(struct.pack(">BHB", direction, len(piece), 0) + piece)
        recs += [struct.pack(">BHB", 0x02, 0, 0), struct.pack(">BHB", 0x03, 0, 0)]  # FINs
        out.append(b"\x01" + b"".join(recs))
    return out


def http_seeds() -> list[bytes]:
    """``targets.http`` format (as ``dicom``'s, without the flag byte): the HTTP conversations
    of ``dicomweb.pcap`` (STOW multipart, QIDO gzip answers, WADO, 401s), whole flows."""
    import dpkt

    flows: dict[tuple[bytes, int], list[tuple[int, bytes]]] = {}
    with (CAPTURES / "dicomweb.pcap").open("rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            tcp = eth.data.data
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            to_server = tcp.dport in (8042, 8043)
            client = (eth.data.src, tcp.sport) if to_server else (eth.data.dst, tcp.dport)
            flows.setdefault(client, []).append((0 if to_server else 1, bytes(tcp.data)))
    out = []
    for pieces in list(flows.values())[:12]:
        body = b""
        for direction, data in pieces:
            for i in range(0, len(data), 2040):
                piece = data[i : i + 2040]
                piece += b"\x00" * (-len(piece) % 8) if len(piece) % 8 else b""
                body += bytes([direction, len(piece) // 8]) + piece
        out.append(body)
    return out


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "dicom": dicom_seeds,
    "http": http_seeds,
    "capture": capture_seeds,
    "pipeline": pipeline_seeds,
}
