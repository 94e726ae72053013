"""The bulk fast path (``Pipeline.feed`` and ``FlowTable.counted``) settles most segments of a
C-STORE in one step; with ``[limits] bulk_fast_path = false`` every packet takes the whole
decoder. Both must give the same tables, on every sample capture and on a large store whose
pixel data is reordered, retransmitted (also with other bytes), lost, stalled by a zero
window, acknowledged ahead of what was seen, or cut by a FIN or RST."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import numpy as np
import polars as pl
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from analyzer.capture import open_inputs
from analyzer.config import Config, Limits
from analyzer.logs.records import TABLES
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from analyzer.run.workers import run_parallel
from analyzer.tcp.table import FlowTable
from tests.dicom import fixtures as fx
from tests.helpers import CAPTURES, TEST_SALT
from tests.hostile import ORDINARY_CLIENT, Conn, Frame

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]
FAST = Config(strict=True, salt=TEST_SALT)
SLOW = dataclasses.replace(FAST, limits=Limits(bulk_fast_path=False))
QUIET = Progress(None, enabled=False)


def run(capture: Path, out: Path, config: Config, workers: int = 1) -> None:
    readers, _ = open_inputs([str(capture)])
    out.mkdir(parents=True)
    if workers == 1:
        run_analysis(config, readers, out, "parquet", QUIET)
    else:
        run_parallel(config, [str(capture)], readers, out, "parquet", QUIET, workers)


def tables(out: Path) -> dict[str, list[str]]:
    got = {}
    for name in TABLES:
        path = out / f"{name}.parquet"
        if path.exists():
            got[name] = sorted(repr(r) for r in pl.read_parquet(path).rows())
    got["alerts"] = sorted((out / "alerts.jsonl").read_text().splitlines())
    return got


@pytest.fixture
def hits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Segments the fast path settled in this process."""
    counter = [0]
    counted = FlowTable.counted

    def counting(self: FlowTable, ts: float, frame: bytes) -> bool:
        done = counted(self, ts, frame)
        counter[0] += done
        return done

    monkeypatch.setattr(FlowTable, "counted", counting)
    return counter


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_fast_path_changes_nothing_on_sample_captures(capture: Path, tmp_path: Path) -> None:
    run(capture, tmp_path / "fast", FAST)
    run(capture, tmp_path / "slow", SLOW)
    assert tables(tmp_path / "fast") == tables(tmp_path / "slow")


def ct_slice(pixels: int = 256) -> Dataset:
    ds = fx.patient("ROE^RICHARD", "PAT-0042")
    ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = pixels
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    rng = np.random.default_rng(7)
    ds.PixelData = rng.integers(0, 4096, pixels * pixels, dtype=np.uint16).tobytes()
    return ds


def pdus(data: bytes) -> Iterator[bytes]:
    """The PDUs of an encoded run of them."""
    i = 0
    while i < len(data):
        end = i + 6 + int.from_bytes(data[i + 2 : i + 6], "big")
        yield data[i:end]
        i = end


def store_session(
    ts: float = 1_700_000_000.0, stores: int = 2, max_pdu: int = 65536, per_pdu: bool = False
) -> Conn:
    """A client storing 128 kB slices (about 90 segments each) in PDUs of ``max_pdu``, each
    PDU sent on its own (``per_pdu``: segments end where PDUs end, as pynetdicom and DCMTK
    send) or the message in one stream of segments, and releasing."""
    c = Conn(ORDINARY_CLIENT, 40404, ts).open()
    c.send(0, fx.A_ASSOCIATE_RQ_PLAIN).send(1, fx.A_ASSOCIATE_AC_PLAIN)
    for i in range(stores):
        message = fx.c_store_rq(max_pdu=max_pdu, message_id=7 + i, ds=ct_slice())
        for pdu in pdus(message) if per_pdu else [message]:
            c.send(0, pdu)
        c.send(1, fx.dimse_message("C-STORE-RSP"))
    c.send(0, fx.A_RELEASE_RQ_PDU).send(1, fx.A_RELEASE_RP_PDU)
    return c.close()


def client_data(frames: list[Frame]) -> list[int]:
    """Indexes of the client's data segments of the first store's pixel data."""
    out = []
    for i, (_, buf) in enumerate(frames):
        tcp = dpkt.ethernet.Ethernet(buf).data.data
        if tcp.sport == 40404 and len(tcp.data) >= 1000:
            out.append(i)
    return out[10:60]


def tcp_edit(buf: bytes, edit: Callable[[dpkt.tcp.TCP], None]) -> bytes:
    eth = dpkt.ethernet.Ethernet(buf)
    ip = eth.data
    edit(ip.data)
    ip.data.sum = 0
    ip.len = 0
    ip.sum = 0
    return bytes(eth)


def reorder(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[5]
    f[i], f[i + 1] = (f[i][0], f[i + 1][1]), (f[i + 1][0], f[i][1])
    return f


def retransmit(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[8]
    return f[: i + 3] + [(f[i + 3][0], f[i][1])] + f[i + 3 :]


def retransmit_other_bytes(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[8]

    def flip(tcp: dpkt.tcp.TCP) -> None:
        tcp.data = bytes(b ^ 0xFF for b in tcp.data[:20]) + tcp.data[20:]

    return f[: i + 3] + [(f[i + 3][0], tcp_edit(f[i][1], flip))] + f[i + 3 :]


def lose(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[12]
    return f[:i] + f[i + 1 :]


def zero_window(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[15]

    def stall(tcp: dpkt.tcp.TCP) -> None:
        tcp.win = 0

    f[i] = (f[i][0], tcp_edit(f[i][1], stall))
    return f


def ack_ahead(f: list[Frame]) -> list[Frame]:
    """The server acknowledges 3 kB the capture has not shown yet, then they come."""
    idx = client_data(f)
    i = idx[20]
    _, last = f[i + 2]
    tcp = dpkt.ethernet.Ethernet(last).data.data
    ahead = tcp.seq + len(tcp.data)

    def acking(t: dpkt.tcp.TCP) -> None:
        t.sport, t.dport = tcp.dport, tcp.sport
        t.seq, t.ack, t.flags, t.data = tcp.ack, ahead, dpkt.tcp.TH_ACK, b""

    ack = tcp_edit(last, acking)
    src_dst = dpkt.ethernet.Ethernet(ack)
    src_dst.data.src, src_dst.data.dst = src_dst.data.dst, src_dst.data.src
    src_dst.data.sum = 0
    src_dst.data.data.sum = 0
    return f[:i] + [(f[i][0], bytes(src_dst))] + f[i:]


def server_ack(client_frame: bytes, ack: int) -> bytes:
    """The server's pure ACK of ``ack`` answering a client segment."""
    tcp = dpkt.ethernet.Ethernet(client_frame).data.data

    def answer(t: dpkt.tcp.TCP) -> None:
        t.sport, t.dport = tcp.dport, tcp.sport
        t.seq, t.ack, t.flags, t.data = tcp.ack, ack, dpkt.tcp.TH_ACK, b""

    eth = dpkt.ethernet.Ethernet(tcp_edit(client_frame, answer))
    eth.data.src, eth.data.dst = eth.data.dst, eth.data.src
    eth.data.sum = 0
    eth.data.data.sum = 0
    return bytes(eth)


def receiver_acks(f: list[Frame]) -> list[Frame]:
    """The server acknowledges every second segment, as a real receiver does; some ACKs come
    late (acknowledging less than was seen) and one twice."""
    out: list[Frame] = []
    seen = 0
    for ts, buf in f:
        out.append((ts, buf))
        tcp = dpkt.ethernet.Ethernet(buf).data.data
        if tcp.sport == 40404 and len(tcp.data) >= 1000:
            seen += 1
            end = tcp.seq + len(tcp.data)
            if seen % 2 == 0:
                out.append((ts + 1e-6, server_ack(buf, end)))
            if seen % 7 == 0:
                out.append((ts + 2e-6, server_ack(buf, end - 2 * len(tcp.data))))
            if seen == 40:
                out.append((ts + 3e-6, server_ack(buf, end)))
    return out


def fin_inside(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[25]

    def fin(tcp: dpkt.tcp.TCP) -> None:
        tcp.flags |= dpkt.tcp.TH_FIN

    f[i] = (f[i][0], tcp_edit(f[i][1], fin))
    return f


def rst_inside(f: list[Frame]) -> list[Frame]:
    i = client_data(f)[30]

    def rst(tcp: dpkt.tcp.TCP) -> None:
        tcp.flags = dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
        tcp.data = b""

    return f[:i] + [(f[i][0], tcp_edit(f[i][1], rst))] + f[i:]


def idle_inside(f: list[Frame]) -> list[Frame]:
    """The transfer pauses past the idle timeout in the middle of the pixel data: the flow
    ends (its lanes with it) and the rest is a flow seen from the middle."""
    i = client_data(f)[20]
    pause = Limits().idle_timeout + 60
    return f[:i] + [(ts + pause, buf) for ts, buf in f[i:]]


def same_ports_again(f: list[Frame]) -> list[Frame]:
    """The session ends and a new one on the same addresses and ports stores again: the first
    flow's lanes must not carry the second's segments."""
    again = store_session(f[-1][0] + 0.5).out
    return f + again


MUTATIONS: dict[str, Callable[[list[Frame]], list[Frame]]] = {
    "plain": lambda f: f,
    "idle_inside": idle_inside,
    "same_ports_again": same_ports_again,
    "reorder": reorder,
    "retransmit": retransmit,
    "retransmit_other_bytes": retransmit_other_bytes,
    "lose": lose,
    "zero_window": zero_window,
    "ack_ahead": ack_ahead,
    "fin_inside": fin_inside,
    "rst_inside": rst_inside,
    "receiver_acks": receiver_acks,
}


def write(frames: Iterator[Frame] | list[Frame], path: Path) -> Path:
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, buf in frames:
            w.writepkt(buf, ts=ts)
    return path


@pytest.fixture
def lanes_left(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lanes (``FlowTable.lanes``) still held once every flow has ended."""
    left: list[int] = []
    finish_all = FlowTable.finish_all

    def finishing(self: FlowTable) -> None:
        finish_all(self)
        left.append(len(self.lanes))

    monkeypatch.setattr(FlowTable, "finish_all", finishing)
    return left


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_fast_path_changes_nothing_on_damaged_transfers(
    mutation: str, tmp_path: Path, hits: list[int], lanes_left: list[int]
) -> None:
    capture = write(MUTATIONS[mutation](store_session().out), tmp_path / "c.pcap")
    run(capture, tmp_path / "fast", FAST)
    fast_hits = hits[0]
    assert lanes_left == [0]  # a finished flow leaves no lane behind
    run(capture, tmp_path / "slow", SLOW)
    assert hits[0] == fast_hits  # the slow run never asked
    fast, slow = tables(tmp_path / "fast"), tables(tmp_path / "slow")
    assert fast == slow
    # most of the ~180 pixel-data segments took the fast path (fewer after the damage)
    assert fast_hits > {"plain": 150, "receiver_acks": 200}.get(mutation, 20), fast_hits
    assert any("C-STORE-RQ" in r for r in fast["dimse"])


def busy_stores(clients: int, stores: int) -> list[Frame]:
    """``clients`` store sessions at once (client ports 40404, 40405, ...), interleaved in time."""
    frames: list[Frame] = []
    for k in range(clients):
        for ts, buf in store_session(1_700_000_000.0 + k * 5e-4, stores=stores).out:
            eth = dpkt.ethernet.Ethernet(buf)
            tcp = eth.data.data
            if tcp.sport == 40404:
                tcp.sport = 40404 + k
            else:
                tcp.dport = 40404 + k
            tcp.sum = 0
            eth.data.sum = 0  # dpkt recomputes both checksums only with the IP one cleared
            frames.append((ts, bytes(eth)))
    return sorted(frames, key=lambda t: t[0])


def test_fast_path_with_workers(tmp_path: Path) -> None:
    capture = write(busy_stores(4, stores=1), tmp_path / "c.pcap")
    run(capture, tmp_path / "fast", FAST, workers=2)
    run(capture, tmp_path / "slow", SLOW, workers=1)
    fast = tables(tmp_path / "fast")
    assert fast == tables(tmp_path / "slow")
    assert sum("C-STORE-RQ" in r for r in fast["dimse"]) == 4


def test_export_still_gets_every_byte(tmp_path: Path) -> None:
    """A dataset tap (``export``) reads every byte, so no segment of a tapped flow may be
    counted by the fast path: the exported slices carry their whole pixel data."""
    import subprocess
    import sys

    import pydicom

    capture = write(store_session().out, tmp_path / "c.pcap")
    out = tmp_path / "export"
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "export", str(capture), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = pl.read_parquet(out / "exported.parquet")
    assert rows.height == 2 and rows["complete"].all()
    want = ct_slice().PixelData
    for path in rows["path"]:
        assert pydicom.dcmread(out / path).PixelData == want


LAYOUTS = {
    "64k_pdus": {},
    "16k_pdus_one_send_each": {"max_pdu": 16384, "per_pdu": True},
    "16k_pdus_streamed": {"max_pdu": 16384},
}


def crossings(frames: list[Frame]) -> list[int]:
    """Indexes of the client's segments that hold a P-DATA-TF header (a PDU boundary inside a
    dataset: ``StreamSink.cross``), past the first store's head."""
    out = []
    offset = 0
    starts = set()
    stream = b""
    for _, buf in frames:
        tcp = dpkt.ethernet.Ethernet(buf).data.data
        if tcp.sport == 40404 and tcp.data:
            stream += tcp.data
    i = 0
    while i < len(stream):
        starts.add(i)
        i += 6 + int.from_bytes(stream[i + 2 : i + 6], "big")
    for i, (_, buf) in enumerate(frames):
        tcp = dpkt.ethernet.Ethernet(buf).data.data
        if tcp.sport == 40404 and tcp.data:
            if any(offset <= s < offset + len(tcp.data) for s in starts) and offset > 30_000:
                out.append(i)
            offset += len(tcp.data)
    return out


def bad_checksum_at_crossing(f: list[Frame]) -> list[Frame]:
    """A crossing segment whose TCP checksum is wrong: dropped and reported on both paths,
    its retransmission (correct) follows."""
    i = crossings(f)[2]
    eth = dpkt.ethernet.Ethernet(f[i][1])
    eth.data.data.sum ^= 0x5A5A
    bad = eth.pack()
    return f[:i] + [(f[i][0], bad)] + f[i : i + 1] + f[i + 1 :]


def lose_crossing(f: list[Frame]) -> list[Frame]:
    i = crossings(f)[3]
    return f[:i] + f[i + 1 :]


def reorder_crossing(f: list[Frame]) -> list[Frame]:
    i = crossings(f)[4]
    f[i], f[i + 1] = (f[i][0], f[i + 1][1]), (f[i + 1][0], f[i][1])
    return f


def odd_pdv_at_crossing(f: list[Frame]) -> list[Frame]:
    """A crossing whose next PDV says "command" (bit 0): not the same dataset, ``feed``
    decides (an anomaly, a new message)."""
    i = crossings(f)[5]
    eth = dpkt.ethernet.Ethernet(f[i][1])
    tcp = eth.data.data
    data = bytearray(tcp.data)
    at = data.find(b"\x04\x00\x00")
    if at >= 0 and at + 11 < len(data):
        data[at + 11] |= 1
    tcp.data = bytes(data)
    tcp.sum = 0
    eth.data.sum = 0
    return f[:i] + [(f[i][0], eth.pack())] + f[i + 1 :]


CROSSING_MUTATIONS: dict[str, Callable[[list[Frame]], list[Frame]]] = {
    "plain": lambda f: f,
    "bad_checksum_at_crossing": bad_checksum_at_crossing,
    "lose_crossing": lose_crossing,
    "reorder_crossing": reorder_crossing,
    "odd_pdv_at_crossing": odd_pdv_at_crossing,
    "receiver_acks": receiver_acks,
}


@pytest.fixture
def crossed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """PDU boundaries the fast path settled (``AssociationParser.cross``) in this process."""
    from analyzer.dicom.association import AssociationParser

    counter = [0]
    cross = AssociationParser.cross

    def counting(self: AssociationParser, direction: int, data: bytes) -> bool:
        done = cross(self, direction, data)
        counter[0] += done
        return done

    monkeypatch.setattr(AssociationParser, "cross", counting)
    return counter


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("mutation", sorted(CROSSING_MUTATIONS))
def test_pdu_boundaries_inside_a_dataset(
    layout: str, mutation: str, tmp_path: Path, crossed: list[int]
) -> None:
    """Segments that cross from one P-DATA-TF into the next of the same dataset (or end
    exactly where a PDU ends) are settled on the fast path too, with the same tables."""
    frames = store_session(**LAYOUTS[layout]).out  # type: ignore[arg-type]
    capture = write(CROSSING_MUTATIONS[mutation](frames), tmp_path / "c.pcap")
    run(capture, tmp_path / "fast", FAST)
    fast_crossed = crossed[0]
    run(capture, tmp_path / "slow", SLOW)
    assert crossed[0] == fast_crossed
    fast, slow = tables(tmp_path / "fast"), tables(tmp_path / "slow")
    assert fast == slow
    assert any("C-STORE-RQ" in r for r in fast["dimse"])
    # two 128 kB datasets: one boundary each in 64 kB PDUs, seven in 16 kB ones (sent PDU by
    # PDU, a boundary is two segments: one ends a PDU, the next begins one); damage costs
    # the fast path the rest of that dataset at most
    least = {"64k_pdus": 1, "16k_pdus_one_send_each": 12, "16k_pdus_streamed": 6}[layout]
    assert fast_crossed >= least, fast_crossed
    bad = [r for r in fast["weird"] if "checksum_bad" in r]
    assert len(bad) == (mutation == "bad_checksum_at_crossing"), bad
    if mutation == "odd_pdv_at_crossing":
        assert any("dicom_" in r for r in fast["weird"])
