"""IPv4 and TCP checksums: computed like dpkt, the offload pattern told apart, and a segment
the server would have dropped kept out of every table (the insertion of a calling AE title the
server never saw)."""

from __future__ import annotations

import dataclasses
import os
import random
import struct
from pathlib import Path

import dpkt
import polars as pl
import pytest

from analyzer.config import Config
from analyzer.net.checksum import Checksums, Verdict, ip_header_ok, tcp_verdict
from tests.helpers import SAMPLE, analyze

Frames = list[tuple[float, bytes]]


def read(path: Path) -> Frames:
    with path.open("rb") as fh:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]


def write(frames: Frames, path: Path) -> Path:
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for ts, buf in frames:
            w.writepkt(buf, ts)
    return path


def recomputed(buf: bytes) -> bytes:
    """The frame as a span port sees it: checksums filled in (dpkt computes zeroed ones)."""
    eth = dpkt.ethernet.Ethernet(buf)
    ip = eth.data
    if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
        ip.sum = 0
        ip.data.sum = 0
        eth.data = dpkt.ip.IP(bytes(ip))  # packs the checksums
    return bytes(eth)


def tcp_of(buf: bytes) -> dpkt.tcp.TCP:
    """The frame's TCP segment (an empty one for any other frame)."""
    ip = dpkt.ethernet.Ethernet(buf).data
    if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
        return ip.data
    return dpkt.tcp.TCP()


def with_tcp_sum(buf: bytes, value: int) -> bytes:
    return buf[:50] + struct.pack("!H", value) + buf[52:]  # plain Ethernet/IPv4/TCP frame


def partial_sum(buf: bytes) -> int:
    """What a sending host with checksum offload leaves in the field: the pseudo-header sum."""
    ip = dpkt.ethernet.Ethernet(buf).data
    length = len(bytes(ip.data))
    words = ip.src + ip.dst + struct.pack("!BBH", 0, 6, length)
    total = sum(struct.unpack(f"!{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("seed", range(40))
def test_verdicts_agree_with_dpkt(seed: int) -> None:
    rnd = random.Random(seed)
    v6 = seed % 2 == 1
    # odd lengths too, and segments past the fold points (``FOLDS``): offloaded sends
    # captured before segmentation reach 64 kB
    payload = os.urandom(rnd.randint(0, 1500) if seed % 4 else rnd.randint(1500, 65_000))
    tcp = dpkt.tcp.TCP(
        sport=rnd.randint(1, 65535), dport=104, seq=rnd.getrandbits(32), data=payload
    )
    if v6:
        ip6 = dpkt.ip6.IP6(src=os.urandom(16), dst=os.urandom(16), nxt=6, hlim=64, data=tcp)
        ip6.plen = len(bytes(tcp))
        raw = bytes(ip6)  # dpkt fills the TCP checksum
        t, src, dst = 40, ip6.src, ip6.dst
    else:
        ip = dpkt.ip.IP(src=os.urandom(4), dst=os.urandom(4), p=6, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        raw = bytes(ip)
        t, src, dst = 20, ip.src, ip.dst
        assert ip_header_ok(raw, 0, 20)
        assert not ip_header_ok(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:], 0, 20)
    assert tcp_verdict(raw, t, len(raw), src, dst) == Verdict.GOOD
    field = int.from_bytes(raw[t + 16 : t + 18], "big")
    broken = raw[: t + 16] + ((field ^ 0x0101) & 0xFFFF).to_bytes(2, "big") + raw[t + 18 :]
    assert tcp_verdict(broken, t, len(raw), src, dst) == Verdict.BAD_TCP
    if payload:
        flipped = raw[:-1] + bytes([raw[-1] ^ 0x40])
        assert tcp_verdict(flipped, t, len(raw), src, dst) == Verdict.BAD_TCP


def test_the_lab_capture_carries_the_offload_pattern() -> None:
    """Why ``auto`` exists: our lab captures were taken on the sending hosts."""
    frames = [buf for _, buf in read(SAMPLE) if len(tcp_of(buf).data) > 0]
    partial = [buf for buf in frames if tcp_of(buf).sum == partial_sum(buf)]
    assert len(partial) > len(frames) // 2
    ip = dpkt.ethernet.Ethernet(partial[0]).data
    assert tcp_verdict(partial[0], 34, 14 + ip.len, ip.src, ip.dst) == Verdict.PARTIAL


def rq_index(frames: Frames) -> int:
    return next(i for i, (_, buf) in enumerate(frames) if tcp_of(buf).data[:2] == b"\x01\x00")


def forged_rq(buf: bytes, checksum: int | None) -> bytes:
    """The A-ASSOCIATE-RQ with another calling AE title (PDU offset 26) and ``checksum``
    (None: the original field, now wrong for the changed bytes)."""
    payload_at = 14 + 20 + tcp_of(buf).off * 4
    at = payload_at + 26
    forged = buf[:at] + b"EVIL-SCU".ljust(16) + buf[at + 16 :]
    return forged if checksum is None else with_tcp_sum(forged, checksum)


def assoc(outdir: Path) -> pl.DataFrame:
    return pl.read_parquet(outdir / "dicom_assoc.parquet").sort("ts")


def weird_names(outdir: Path) -> list[str]:
    return pl.read_parquet(outdir / "weird.parquet")["name"].to_list()


def cfg(mode: Checksums) -> Config:
    return dataclasses.replace(Config(), checksums=mode)


def test_a_segment_with_a_wrong_checksum_is_not_used(tmp_path: Path) -> None:
    """The forged RQ comes first with a checksum the server rejects; the real RQ follows. The
    association keeps the AE title the server saw, and the forgery is a weird row."""
    frames = read(SAMPLE)
    i = rq_index(frames)
    ts, real = frames[i]
    bad = forged_rq(real, (tcp_of(real).sum ^ 0x5A5A) & 0xFFFF)
    clean = analyze(SAMPLE, tmp_path / "clean")
    attacked = write([*frames[:i], (ts - 1e-4, bad), *frames[i:]], tmp_path / "attacked.pcap")
    out = analyze(attacked, tmp_path / "out")
    assert out.conn.drop("uid").equals(clean.conn.drop("uid"))
    assert (
        assoc(tmp_path / "out")["calling_ae"].to_list()
        == assoc(tmp_path / "clean")["calling_ae"].to_list()
    )
    assert weird_names(tmp_path / "out").count("tcp_checksum_bad") == 1
    # told to ignore checksums, the analyzer records what the server never saw
    analyze(attacked, tmp_path / "ignored", cfg(Checksums.IGNORE))
    assert "EVIL-SCU" in assoc(tmp_path / "ignored")["calling_ae"].to_list()


def test_span_port_capture_and_the_offload_pattern(tmp_path: Path) -> None:
    """On a span port every checksum is complete. There a forged segment carrying the offload
    pattern is refused after the direction's correct ones (``auto``) and always (``verify``);
    the capture itself gives the same tables in both modes as the host capture in ``auto``."""
    frames = [(ts, recomputed(buf)) for ts, buf in read(SAMPLE)]
    span = write(frames, tmp_path / "span.pcap")
    host = analyze(SAMPLE, tmp_path / "host")
    for mode in (Checksums.AUTO, Checksums.VERIFY):
        out = analyze(span, tmp_path / mode.value, cfg(mode))
        assert out.conn.equals(host.conn), mode
        assert "tcp_checksum_bad" not in weird_names(tmp_path / mode.value)
    i = rq_index(frames)
    ts, real = frames[i]
    forged = forged_rq(real, None)
    forged = with_tcp_sum(forged, partial_sum(forged))  # what an informed attacker sends
    attacked = write([*frames[:i], (ts - 1e-4, forged), *frames[i:]], tmp_path / "attacked.pcap")
    for mode in (Checksums.AUTO, Checksums.VERIFY):
        analyze(attacked, tmp_path / f"attacked-{mode.value}", cfg(mode))
        assert "EVIL-SCU" not in assoc(tmp_path / f"attacked-{mode.value}")["calling_ae"].to_list()
        assert "tcp_checksum_bad" in weird_names(tmp_path / f"attacked-{mode.value}")
    # the host capture in verify mode: every offloaded segment is refused, and said so
    analyze(SAMPLE, tmp_path / "host-verify", cfg(Checksums.VERIFY))
    assert weird_names(tmp_path / "host-verify").count("tcp_checksum_bad") > 10


def test_bad_ip_header_and_bad_syn(tmp_path: Path) -> None:
    """A frame whose IPv4 header checksum is wrong is dropped whole; a SYN with a wrong TCP
    checksum opens no flow (a flow-less weird row)."""
    frames = read(SAMPLE)
    first_syn = next(
        i
        for i, (_, buf) in enumerate(frames)
        if isinstance(dpkt.ethernet.Ethernet(buf).data, dpkt.ip.IP)
        and tcp_of(buf).flags == dpkt.tcp.TH_SYN
    )
    ts, syn = frames[first_syn]
    bad_syn = with_tcp_sum(syn, (tcp_of(syn).sum ^ 0x0F0F) & 0xFFFF)
    bad_syn = bad_syn[:36] + b"\x99\x99" + bad_syn[38:]  # another source port: its own flow
    i = rq_index(frames)
    rq_ts, rq = frames[i]
    bad_ip = rq[:24] + bytes([rq[24] ^ 0xFF]) + rq[25:]  # IPv4 header checksum byte
    out = analyze(
        write(
            [(ts - 1e-3, bad_syn), *frames[:i], (rq_ts - 1e-4, bad_ip), *frames[i:]],
            tmp_path / "bad.pcap",
        ),
        tmp_path / "out",
    )
    clean = analyze(SAMPLE, tmp_path / "clean")
    assert out.conn.height == clean.conn.height  # no flow from the bad SYN
    weird = pl.read_parquet(tmp_path / "out" / "weird.parquet")
    bad = weird.filter(pl.col("name").is_in(["tcp_checksum_bad", "ip_checksum_bad"]))
    assert sorted(bad["name"].to_list()) == ["ip_checksum_bad", "tcp_checksum_bad"]
    assert bad.filter(pl.col("name") == "tcp_checksum_bad")["uid"].to_list() == [None]


def verified_timestamps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: Config
) -> set[float]:
    """Timestamps of the segments whose checksums the flow table computed."""
    from analyzer.tcp.table import FlowTable

    seen: set[float] = set()
    checksum = FlowTable._checksum

    def recording(self: FlowTable, ts: float, *rest: object) -> object:
        seen.add(ts)
        return checksum(self, ts, *rest)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(FlowTable, "_checksum", recording)
        analyze(SAMPLE, tmp_path / "probe", config)
    return seen


def test_only_bytes_nothing_reads_skip_verification(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A segment inside a dataset past its kept head is only counted: a wrong checksum there
    changes nothing decoded and is not computed (every table as before). A wrong checksum on
    a segment whose bytes are read is refused, and the hole is a gap."""
    from analyzer.dicom.limits import DicomLimits

    frames = read(SAMPLE)
    config = dataclasses.replace(Config(), dicom=DicomLimits(max_dataset_head=1024))
    verified = verified_timestamps(monkeypatch, tmp_path, config)
    stores = [
        i
        for i, (_, buf) in enumerate(frames)
        if len(tcp_of(buf).data) > 100 and tcp_of(buf).dport == 11112
    ]
    bulk = [i for i in stores if frames[i][0] not in verified]
    read_ = [i for i in stores if frames[i][0] in verified]
    assert bulk and read_
    clean = analyze(SAMPLE, tmp_path / "clean", config)

    def corrupt(i: int) -> Path:
        broken = list(frames)
        ts, buf = broken[i]
        broken[i] = (ts, with_tcp_sum(buf, (tcp_of(buf).sum ^ 0x3333) & 0xFFFF))
        return write(broken, tmp_path / f"broken{i}.pcap")

    out = analyze(corrupt(bulk[len(bulk) // 2]), tmp_path / "bulk", config)
    assert "tcp_checksum_bad" not in weird_names(tmp_path / "bulk")
    assert out.conn.equals(clean.conn)
    assert assoc(tmp_path / "bulk").equals(assoc(tmp_path / "clean"))
    analyze(corrupt(read_[-1]), tmp_path / "read", config)
    names = weird_names(tmp_path / "read")
    assert "tcp_checksum_bad" in names and "tcp_content_gap" in names
