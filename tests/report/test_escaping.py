"""Hostile text on the wire (an AE title and a TLS server name written as HTML) comes out of
``analyze`` and ``report`` escaped by the template engine, never as markup."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt

from analyzer.config import Config
from analyzer.report.html import write_report
from tests.dicom import fixtures as fx
from tests.helpers import analyze

CALLING = b"<img src=x/on=1>"
CALLED = b"<script>alert(1)"
SNI = b"<img src=x onerror=alert(1)>.example"


def _client_hello(sni: bytes) -> bytes:
    name = b"\x00" + struct.pack(">H", len(sni)) + sni
    ext = struct.pack(">HH", 0, len(name) + 2) + struct.pack(">H", len(name)) + name
    body = (
        b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
        + struct.pack(">H", len(ext)) + ext
    )  # fmt: skip
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _session(
    w: dpkt.pcap.Writer,
    ts: float,
    client: bytes,
    sport: int,
    dport: int,
    sends: list[tuple[int, bytes]],
) -> float:
    """A TCP session 10.0.0.5:sport -> 10.0.0.9:dport: handshake, payloads, FIN both ways."""
    server = bytes([10, 0, 0, 9])
    seq = {0: 1000, 1: 5000}

    def frame(d: int, flags: int, payload: bytes = b"") -> None:
        nonlocal ts
        src, dst = (client, server) if d == 0 else (server, client)
        sp, dp = (sport, dport) if d == 0 else (dport, sport)
        tcp = dpkt.tcp.TCP(
            sport=sp, dport=dp, seq=seq[d], ack=seq[1 - d], flags=flags, data=payload
        )
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)
        w.writepkt(bytes(eth), ts)
        ts += 0.001
        seq[d] = (
            seq[d] + len(payload) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        ) & 0xFFFFFFFF

    frame(0, dpkt.tcp.TH_SYN)
    frame(1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
    frame(0, dpkt.tcp.TH_ACK)
    for d, payload in sends:
        frame(d, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, payload)
    frame(0, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    frame(1, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    frame(0, dpkt.tcp.TH_ACK)
    return ts


def test_hostile_ae_title_and_sni_are_escaped(tmp_path: Path) -> None:
    rq = bytearray(fx.A_ASSOCIATE_RQ_PLAIN)
    rq[10:26], rq[26:42] = CALLED, CALLING
    ac = bytearray(fx.A_ASSOCIATE_AC_PLAIN)
    ac[10:26], ac[26:42] = CALLED, CALLING
    pcap = tmp_path / "hostile.pcap"
    with open(pcap, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        client = bytes([10, 0, 0, 5])
        ts = _session(
            w,
            1.0,
            client,
            40001,
            104,
            [(0, bytes(rq)), (1, bytes(ac)), (0, fx.A_RELEASE_RQ_PDU), (1, fx.A_RELEASE_RP_PDU)],
        )
        _session(w, ts + 1, client, 40002, 2762, [(0, _client_hello(SNI))])
    out = tmp_path / "out"
    analyze(pcap, out)
    html = write_report(out, tmp_path / "report.html", Config()).read_text()
    for raw in (CALLING, CALLED, SNI):
        text = raw.decode()
        assert text not in html, text
        assert text.replace("<", "&lt;").replace(">", "&gt;") in html, text
    assert "<script" not in html and "<img src=x" not in html
    assert html.count("<img ") == html.count('<img alt="')  # only our plots are images
