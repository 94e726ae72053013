"""Hostile captures: every class of attack on the sensor itself, each around one ordinary
association that must come out exactly as it does alone.

``build(name, path, scale)`` writes one capture; ``scale`` 1.0 is the size of the attack as
measured against the first version (40,000 associations of 128 contexts, 600 flows of 1 MiB
buffers, ...), which ``benchmarks/hostile.py`` runs with peak RSS measured; the tests run them
scaled down. Frames carry correct IPv4 and TCP checksums, as on a span port.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

Frame = tuple[float, bytes]
SERVER = bytes([10, 9, 0, 2])
ORDINARY_CLIENT = bytes([10, 8, 0, 1])
ORDINARY_PORT = 40404
ORDINARY_IP = "10.8.0.1"
MSS = 1448


def _fold(n: int) -> int:
    return n % 0xFFFF


def frame(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    data: bytes = b"",
) -> bytes:
    tcp = struct.pack(
        ">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0
    )
    seg = tcp + data
    pseudo = int.from_bytes(src + dst, "big") + 6 + len(seg)
    body = int.from_bytes(seg, "big") << (8 if len(seg) & 1 else 0)
    csum = 0xFFFF - _fold(pseudo + body)
    seg = seg[:16] + struct.pack(">H", csum or 0xFFFF) + seg[18:]
    return _eth(_ipv4(src, dst, seg))


def _ipv4(src: bytes, dst: bytes, body: bytes, ident: int = 0, frag: int = 0) -> bytes:
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, 6, 0, src, dst)
    csum = 0xFFFF - _fold(int.from_bytes(h, "big"))
    return h[:10] + struct.pack(">H", csum) + h[12:] + body


def _eth(ip: bytes) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip


class Conn:
    """One TCP connection, segment by segment, sequence numbers following the bytes."""

    def __init__(self, client: bytes, cport: int, ts: float, server_port: int = 104) -> None:
        self.c, self.cp, self.sp, self.ts = client, cport, server_port, ts
        self.seq = [1000, 900_000]
        self.out: list[Frame] = []

    def put(self, d: int, flags: int, data: bytes = b"", seq_offset: int = 0) -> None:
        self.ts += 1e-5
        src, dst = (self.c, SERVER) if d == 0 else (SERVER, self.c)
        sp, dp = (self.cp, self.sp) if d == 0 else (self.sp, self.cp)
        self.out.append(
            (
                self.ts,
                frame(src, dst, sp, dp, self.seq[d] + seq_offset, self.seq[1 - d], flags, data),
            )
        )
        if not seq_offset:
            self.seq[d] += len(data) + (1 if flags & 0x03 else 0)

    def open(self) -> Conn:
        self.put(0, 0x02)
        self.put(1, 0x12)
        self.put(0, 0x10)
        return self

    def send(self, d: int, data: bytes) -> Conn:
        for i in range(0, len(data), MSS):
            self.put(d, 0x18, data[i : i + MSS])
        return self

    def close(self) -> Conn:
        self.put(0, 0x11)
        self.put(1, 0x11)
        self.put(0, 0x10)
        return self


def ordinary(ts: float) -> list[Frame]:
    """An association as a modality makes it: echo, a store, a query, released."""
    from tests.dicom import fixtures as fx

    c = Conn(ORDINARY_CLIENT, ORDINARY_PORT, ts).open()
    c.send(0, fx.A_ASSOCIATE_RQ_PLAIN).send(1, fx.A_ASSOCIATE_AC_PLAIN)
    c.send(0, fx.c_echo_rq()).send(1, fx.c_echo_rsp())
    c.send(0, fx.c_store_rq()).send(1, fx.dimse_message("C-STORE-RSP"))
    c.send(0, fx.c_find_rq(name="DOE*"))
    c.send(0, fx.A_RELEASE_RQ_PDU).send(1, fx.A_RELEASE_RP_PDU)
    return c.close().out


def _client(i: int) -> bytes:
    return bytes([10, 64 + (i >> 16 & 63), i >> 8 & 255, i & 255])


def _rq(n_contexts: int, calling: str = "FLOOD", version: str = "FLOOD_1") -> bytes:
    """An A-ASSOCIATE-RQ with ``n_contexts`` storage contexts (three syntaxes each)."""

    def item(t: int, v: bytes) -> bytes:
        return struct.pack(">BBH", t, 0, len(v)) + v

    syntaxes = b"".join(
        item(0x40, s)
        for s in (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2")
    )
    body = item(0x10, b"1.2.840.10008.3.1.1.1")
    for i in range(n_contexts):
        abstract = f"1.2.840.10008.5.1.4.1.1.{i + 1}".encode()
        body += item(0x20, bytes([2 * i + 1 & 255, 0, 0, 0]) + item(0x30, abstract) + syntaxes)
    body += item(
        0x50,
        item(0x51, struct.pack(">I", 16384))
        + item(0x52, b"1.2.826.0.1.3680043.9.3811.2.1")
        + item(0x55, version.encode()[:16]),
    )
    fixed = (
        struct.pack(">HH", 1, 0)
        + b"ANY-SCP".ljust(16)
        + calling.encode()[:16].ljust(16)
        + bytes(32)
    )
    pdu = fixed + body
    return struct.pack(">BBI", 1, 0, len(pdu)) + pdu


def assoc_flood(scale: float) -> Iterator[Frame]:
    """Associations of 128 contexts, each left open (no answer, no end)."""
    rq = _rq(128)
    n = max(int(40_000 * scale), 50)
    for i in range(n):
        yield from Conn(_client(i), 20000 + i % 40000, 1000.0 + i * 1e-3).open().send(0, rq).out


def control_pdu_flood(scale: float) -> Iterator[Frame]:
    """Flows whose A-ASSOCIATE-RQ claims 1 MiB and never ends (the bytes buffered to decode it)."""
    n = max(int(600 * scale), 20)
    rq = _rq(4)
    claimed = (1 << 20) - 6
    start = struct.pack(">BBI", 1, 0, claimed) + rq[6:]
    junk = start + bytes(claimed - 64 - len(rq))
    for i in range(n):
        yield from Conn(_client(i), 30000 + i, 1000.0 + i * 1e-2).open().send(0, junk).out


def ooo_flood(scale: float) -> Iterator[Frame]:
    """Flows with a hole at their start and then as much out of order behind it as a flow may
    buffer (just under the 512-segment cap: 0.7 MB each)."""
    n = max(int(600 * scale), 20)
    for i in range(n):
        c = Conn(_client(i), 31000 + i, 1000.0 + i * 1e-2).open()
        for k in range(1, 510):
            c.put(0, 0x18, bytes(MSS), seq_offset=k * MSS)
        yield from c.out


def inventory_poison(scale: float) -> Iterator[Frame]:
    """Fill the inventory's vocabulary with distinct values, then give endpoints the last ones."""
    n = max(int(70_000 * scale), 100)
    for i in range(n):
        rq = _rq(1, calling=f"P{i:08d}", version=f"V{i:08d}")
        c = Conn(_client(i % 20000), 20000 + i // 20000, 1000.0 + i * 1e-3).open()
        yield from c.send(0, rq).close().out


def query_key_flood(scale: float) -> Iterator[Frame]:
    """One association, many C-FIND identifiers of 2,000 keys each."""
    from pydicom.dataset import Dataset

    from tests.dicom import fixtures as fx

    c = Conn(_client(1), 33000, 1000.0).open()
    c.send(0, fx.A_ASSOCIATE_RQ_PLAIN).send(1, fx.A_ASSOCIATE_AC_PLAIN)
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientName = "*"
    for k in range(2000):  # private keys: 8 blocks of 256 under their creators
        group = 0x0009 + 2 * (k // 256)
        if k % 256 == 0:
            ds.add_new(group << 16 | 0x0010, "LO", "FLOOD")
        ds.add_new(group << 16 | 0x1000 | (k % 256), "LO", f"K{k}")
    identifier = [_find(ds, m + 1) for m in range(max(int(1024 * scale), 10))]
    for pdu in identifier:
        c.send(0, pdu)
    yield from c.out


def _find(ds: object, message_id: int) -> bytes:
    from io import BytesIO

    from pynetdicom import dimse_messages
    from pynetdicom.dimse_primitives import C_FIND

    from tests.dicom import fixtures as fx

    prim = C_FIND()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = fx.PATIENT_FIND
    prim.Priority = 2
    prim.Identifier = BytesIO(fx.encode_dataset(ds))  # type: ignore[arg-type]
    msg = dimse_messages.C_FIND_RQ()
    msg.primitive_to_message(prim)
    return fx._pdata(msg, 5, 16384)


def syn_flood(scale: float) -> Iterator[Frame]:
    """SYNs from distinct ports, all with one timestamp."""
    n = max(int(300_000 * scale), 500)
    for i in range(n):
        yield 999.0, frame(_client(i), SERVER, 1024 + i % 60000, 104, i, 0, 0x02)


def history_flood(scale: float) -> Iterator[Frame]:
    """One flow: data, then a reset again and again with new sequence numbers."""
    n = max(int(1_000_000 * scale), 500)
    c = Conn(_client(7), 34000, 1000.0).open().send(0, b"\x05\x00\x00\x00\x00\x04" + bytes(4))
    for i in range(n):
        c.put(0 if i % 2 else 1, 0x04, seq_offset=(i + 1) * 100_000)
    yield from c.out


def tiny_fragments(scale: float) -> Iterator[Frame]:
    """A 64 KB datagram (an RQ segment) in 8-byte IPv4 fragments, last fragment first."""
    c = Conn(_client(3), 35000, 1000.0).open()
    yield from c.out
    body = _rq(4) + bytes(64_000 - len(_rq(4)))
    seg = frame(_client(3), SERVER, 35000, 104, c.seq[0], c.seq[1], 0x18, body)[34:]
    pieces = [
        _eth(
            _ipv4(
                _client(3),
                SERVER,
                seg[o : o + 8],
                ident=77,
                frag=(o >> 3) | (0x2000 if o + 8 < len(seg) else 0),
            )
        )
        for o in range(0, len(seg), 8)
    ]
    for k, p in enumerate(reversed(pieces)):
        yield 1000.1 + k * 1e-7, p


def release_recursion(scale: float) -> Iterator[Frame]:
    """Plausible A-RELEASE-RQ headers separated by junk, many in one segment."""
    c = Conn(_client(4), 36000, 1000.0).open()
    from tests.dicom import fixtures as fx

    c.send(0, fx.A_ASSOCIATE_RQ_PLAIN).send(1, fx.A_ASSOCIATE_AC_PLAIN)
    blob = (b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00" + b"\xff") * max(int(600 * scale), 50)
    c.put(0, 0x18, blob[:65000])
    yield from c.out


def garbage_on_dicom_ports(scale: float) -> Iterator[Frame]:
    """Flows to port 104 and 11112 carrying random bytes, HTTP and an SSH banner."""
    import random

    rnd = random.Random(104)
    n = max(int(2000 * scale), 20)
    texts = [b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"]
    for i in range(n):
        c = Conn(_client(i), 37000 + i % 20000, 1000.0 + i * 1e-3, 104 if i % 2 else 11112)
        c.open().send(0, texts[i % 2] if i % 3 == 0 else rnd.randbytes(rnd.randint(1, 3000)))
        yield from c.close().out


def malformed_pdus(scale: float) -> Iterator[Frame]:
    """Associations that go wrong after the AC: an undefined PDU type, a PDV on an even
    context, a P-DATA longer than its bytes, a PDU length of 4 GB, an RQ cut short."""
    from tests.dicom import fixtures as fx

    bad = [
        fx.PDU_UNKNOWN_TYPE,
        fx.P_DATA_EVEN_CONTEXT,
        fx.P_DATA_PDV_OVERRUN,
        fx.A_RELEASE_RQ_HUGE,
        fx.A_ASSOCIATE_RQ_ITEM_OVERRUN,
    ]
    n = max(int(1000 * scale), len(bad))
    for i in range(n):
        c = Conn(_client(i), 38000 + i % 20000, 1000.0 + i * 1e-3).open()
        c.send(0, fx.A_ASSOCIATE_RQ_PLAIN).send(1, fx.A_ASSOCIATE_AC_PLAIN)
        yield from c.send(0, bad[i % len(bad)]).close().out


def overlapping_copies(scale: float) -> Iterator[Frame]:
    """The A-ASSOCIATE-RQ sent twice with different bytes: as overlapping IPv4 fragments and
    as a TCP retransmission (the first copy wins; the disagreement is an anomaly)."""
    from tests.dicom import fixtures as fx

    n = max(int(1000 * scale), 10)
    for i in range(n):
        c = Conn(_client(i), 39000 + i % 20000, 1000.0 + i * 1e-3).open()
        rq = fx.A_ASSOCIATE_RQ_PLAIN
        forged = rq[:26] + b"FORGED".ljust(16) + rq[42:]
        if i % 2:
            c.put(0, 0x18, rq)
            c.put(0, 0x18, forged, seq_offset=-len(rq))  # the retransmission disagrees
        else:
            seg = frame(c.c, SERVER, c.cp, c.sp, c.seq[0], c.seq[1], 0x18, rq)[34:]
            alt = frame(c.c, SERVER, c.cp, c.sp, c.seq[0], c.seq[1], 0x18, forged)[34:]
            c.seq[0] += len(rq)
            for off, piece, more in ((0, seg[:64], 1), (32, alt[32:], 0), (64, seg[64:], 0)):
                ip = _ipv4(
                    c.c, SERVER, piece, ident=i & 0xFFFF, frag=(off >> 3) | (0x2000 if more else 0)
                )
                c.ts += 1e-5
                c.out.append((c.ts, _eth(ip)))
        yield from c.out


def _hostile_http(i: int, scale: float) -> list[tuple[int, bytes]]:
    """One hostile HTTP conversation (direction, bytes), chosen by ``i``."""
    import gzip

    kind = i % 6
    get = b"GET /dicom-web/studies?PatientName=* HTTP/1.1\r\nHost: pacs\r\n\r\n"
    if kind == 0:  # headers far past any sane size
        return [(0, b"GET / HTTP/1.1\r\nHost: pacs\r\nX-Pad: " + b"a" * 200_000 + b"\r\n\r\n")]
    if kind == 1:  # a chunked upload that never ends
        chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        head = (
            b"POST /dicom-web/studies HTTP/1.1\r\nHost: pacs\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        return [(0, head + chunk * max(int(2000 * scale), 20))]
    if kind == 2:  # a gzip bomb answer
        bomb = gzip.compress(b"\0" * max(int((256 << 20) * scale), 80 << 20), 9)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Encoding: gzip"
            b"\r\nContent-Length: " + str(len(bomb)).encode() + b"\r\n\r\n"
        )
        return [(0, get), (1, head + bomb)]
    if kind == 3:  # a Content-Length that is no number, then a good request
        return [(0, b"POST /a HTTP/1.1\r\nHost: pacs\r\nContent-Length: lots\r\n\r\n" + get)]
    if kind == 4:  # a STOW whose multipart body never reaches its closing boundary
        body = (
            b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 128 + b"DICM" + b"x" * 5000
        )
        head = (
            b"POST /dicom-web/studies HTTP/1.1\r\nHost: pacs\r\nContent-Type: multipart/related; "
            b'type="application/dicom"; boundary=b1\r\nContent-Length: '
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        return [(0, head + body)]
    # a broken request (a header line without a colon, then junk), a good one after it
    broken = b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n" + b"\x00\xff junk " * 100
    return [(0, broken + get), (1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]


def hostile_http(scale: float) -> Iterator[Frame]:
    """HTTP to port 8080: oversized headers, an endless chunked body, a gzip bomb, a bogus
    Content-Length, an unterminated multipart STOW, garbage before a request."""
    n = max(int(300 * scale), 6)
    for i in range(n):
        c = Conn(_client(i), 40000 + i % 20000, 1000.0 + i * 1e-3, 8080).open()
        for d, data in _hostile_http(i, scale):
            c.send(d, data)
        yield from c.close().out


ATTACKS: dict[str, Callable[[float], Iterator[Frame]]] = {
    "garbage_on_dicom_ports": garbage_on_dicom_ports,
    "malformed_pdus": malformed_pdus,
    "overlapping_copies": overlapping_copies,
    "assoc_flood": assoc_flood,
    "control_pdu_flood": control_pdu_flood,
    "ooo_flood": ooo_flood,
    "inventory_poison": inventory_poison,
    "query_key_flood": query_key_flood,
    "syn_flood": syn_flood,
    "history_flood": history_flood,
    "tiny_fragments": tiny_fragments,
    "release_recursion": release_recursion,
    "hostile_http": hostile_http,
}


def build(name: str, path: Path, scale: float) -> Path:
    """The attack with the ordinary association placed among its packets, in time order."""
    import heapq

    import dpkt

    attack = sorted(ATTACKS[name](scale), key=lambda f: f[0])
    middle = attack[len(attack) // 2][0] if attack else 1000.0
    frames = list(heapq.merge(attack, ordinary(middle), key=lambda f: f[0]))
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for ts, buf in frames:
            w.writepkt(buf, ts)
    return path


def build_ordinary(path: Path, ts: float) -> Path:
    import dpkt

    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for t, buf in ordinary(ts):
            w.writepkt(buf, t)
    return path


def middle_ts(name: str, scale: float) -> float:
    attack = sorted(f[0] for f in ATTACKS[name](scale))
    return attack[len(attack) // 2] if attack else 1000.0
