"""conn_state, history, orientation, port reuse, timeouts and memory bounds."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Limits
from tests.helpers import ACK, FIN, PSH, RST, SAMPLE, SYN, Driver, analyze


def test_sample_capture_states_and_services(tmp_path: Path) -> None:
    conn = analyze(SAMPLE, tmp_path).conn
    by_port = {p: conn.filter(pl.col("resp_p") == p) for p in (11112, 4242, 8080, 5555)}
    assert by_port[11112]["service"].to_list() == ["dicom", "dicom"]  # echoscu, storescu
    assert by_port[4242]["service"].to_list() == ["dicom", "dicom"]  # pynetdicom store, findscu
    assert by_port[8080]["service"].to_list() == ["http"]  # HTTP is decoded too (DICOMweb)
    assert by_port[5555]["conn_state"].to_list() == ["REJ"]
    assert by_port[5555]["history"].to_list() == ["Sr"]
    assert by_port[5555]["end_reason"].to_list() == ["rst"]
    normal = conn.filter(pl.col("resp_p") != 5555)
    assert set(normal["conn_state"]) == {"SF"}
    assert all(h.startswith("ShAD") for h in normal["history"])
    assert conn["uid"].n_unique() == conn.height


def test_uids_are_deterministic(tmp_path: Path) -> None:
    a = analyze(SAMPLE, tmp_path / "a").conn["uid"].to_list()
    b = analyze(SAMPLE, tmp_path / "b").conn["uid"].to_list()
    assert a == b and all(u.startswith("C") and len(u) == 18 for u in a)


def handshake(drv: Driver, ts: float = 1.0, isn: int = 100, sport: int = 40000) -> None:
    drv.seg(ts, SYN, isn, sport=sport)
    drv.seg(ts, SYN | ACK, 900, isn + 1, from_client=False, sport=sport)
    drv.seg(ts, ACK, isn + 1, 901, sport=sport)


@pytest.mark.parametrize(
    ("script", "state", "history"),
    [
        ([("c", SYN, 100, 0)], "S0", "S"),
        ([("c", SYN, 100, 0), ("s", RST | ACK, 0, 101)], "REJ", "Sr"),
        ([("c", SYN, 100, 0), ("c", RST, 101, 0)], "RSTOS0", "SR"),
        ([("c", SYN, 100, 0), ("c", FIN, 101, 0)], "SH", "SF"),
        ([("s", SYN | ACK, 900, 101), ("s", FIN | ACK, 901, 101)], "SHR", "^hf"),
        ([("c", SYN, 100, 0), ("s", SYN | ACK, 900, 101), ("c", ACK, 101, 901)], "S1", "ShA"),
        (
            [
                ("c", SYN, 100, 0),
                ("s", SYN | ACK, 900, 101),
                ("c", ACK, 101, 901),
                ("c", RST, 101, 0),
            ],
            "RSTO",
            "ShAR",
        ),
        (
            [
                ("c", SYN, 100, 0),
                ("s", SYN | ACK, 900, 101),
                ("c", ACK, 101, 901),
                ("s", RST, 901, 0),
            ],
            "RSTR",
            "ShAr",
        ),
        (
            [
                ("c", SYN, 100, 0),
                ("s", SYN | ACK, 900, 101),
                ("c", ACK, 101, 901),
                ("c", FIN | ACK, 101, 901),
            ],
            "S2",
            "ShAF",
        ),
        (
            [
                ("c", SYN, 100, 0),
                ("s", SYN | ACK, 900, 101),
                ("c", ACK, 101, 901),
                ("s", FIN | ACK, 901, 101),
            ],
            "S3",
            "ShAf",
        ),
        ([("c", ACK, 500, 700)], "OTH", "A"),
        ([("c", SYN | FIN, 100, 0)], "SH", "QSF"),
    ],
)
def test_zeek_conn_states(
    script: list[tuple[str, int, int, int]], state: str, history: str
) -> None:
    drv = Driver()
    for who, flags, seq, ack in script:
        drv.seg(1.0, flags, seq, ack, from_client=who == "c")
    drv.finish()
    (flow,) = drv.conns
    assert flow.conn_state() == state
    assert flow.history == history


def test_midstream_pickup_orients_by_server_port() -> None:
    drv = Driver()
    drv.seg(1.0, ACK | PSH, 5000, 7000, b"\x04\x00\x00\x00\x00\x10" + b"x" * 16, from_client=False)
    drv.seg(1.1, ACK, 7000, 5022)
    drv.finish()
    (flow,) = drv.conns
    assert (flow.orig_p, flow.resp_p) == (40000, 11112)
    assert flow.midstream and flow.history.startswith("^")
    assert flow.conn_state() == "OTH"


def test_port_reuse_after_close_is_a_new_flow() -> None:
    drv = Driver()
    for isn, t in ((100, 1.0), (90000, 2.0)):
        handshake(drv, t, isn)
        drv.seg(t, ACK | FIN, isn + 1, 901)
        drv.seg(t, ACK | FIN, 901, isn + 2, from_client=False)
        drv.seg(t, ACK, isn + 2, 902)
    drv.finish()
    assert [f.conn_state() for f in drv.conns] == ["SF", "SF"]
    assert drv.conns[0].uid != drv.conns[1].uid


def test_syn_retransmission_is_the_same_flow() -> None:
    drv = Driver()
    drv.seg(1.0, SYN, 100)
    drv.seg(2.0, SYN, 100)
    drv.seg(3.0, SYN | ACK, 900, 101, from_client=False)
    drv.finish()
    assert len(drv.conns) == 1 and drv.conns[0].pkts == [2, 1]


def test_idle_timeout_closes_flows_on_capture_time() -> None:
    drv = Driver(limits=Limits(idle_timeout=60.0))
    handshake(drv)
    drv.seg(2.0, ACK | PSH, 101, 901, b"hello")
    drv.seg(100.0, SYN, 555, sport=40001)  # another flow moves the clock on
    assert len(drv.conns) == 1 and drv.conns[0].end_reason == "timeout"
    drv.finish()
    assert drv.conns[1].end_reason == "end_of_capture"


def test_syn_flood_is_bounded_by_max_flows() -> None:
    limits = Limits(max_flows=500)
    drv = Driver(limits=limits, with_sink=False)
    ended: dict[str, int] = {}

    def count(flow) -> None:  # type: ignore[no-untyped-def]
        ended[flow.end_reason] = ended.get(flow.end_reason, 0) + 1

    drv.table.on_end = count
    tracemalloc.start()
    for i in range(30_000):
        drv.seg(1.0 + i * 1e-5, SYN, i * 7, sport=1024 + i % 60000, dport=104 + i // 60000)
        assert drv.table.open_flows <= 500
        if i == 5_000:
            early, _ = tracemalloc.get_traced_memory()
    late, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    drv.finish()
    assert sum(ended.values()) == 30_000  # every attempt is reported, none is kept forever
    assert set(ended) == {"evicted", "end_of_capture"}
    assert late - early < 1 << 20  # flat: 25,000 more SYNs cost no memory
    assert "tcp_flow_table_full" in drv.weird_names()
    assert (
        sum(1 for w in drv.weirds if w[2] == "tcp_flow_table_full") <= limits.max_weird_global + 1
    )


def test_payload_of_unrecognised_flows_is_not_copied(tmp_path: Path) -> None:
    """HTTP in the sample is not DICOM: it gets no decoder, so reassembly stops slicing its
    payload; DICOM flows get one. Checked at the moment the sniffer decides."""
    from analyzer.capture import merged_records, open_inputs
    from analyzer.config import Config
    from analyzer.run.pipeline import Pipeline, table_writers

    writers = table_writers(tmp_path, "parquet")
    decided: dict[int, str | None] = {}

    def heard(flow, service):  # type: ignore[no-untyped-def]
        decided[flow.resp_p] = service

    pipe = Pipeline(Config(strict=True), writers, on_service=heard)
    sinks_after_decision: dict[int, object] = {}
    original = pipe.table.on_end

    def spy(flow) -> None:  # type: ignore[no-untyped-def]
        sinks_after_decision[flow.resp_p] = flow.sink
        original(flow)

    pipe.table.on_end = spy
    readers, _ = open_inputs([str(SAMPLE)])
    pipe.feed(merged_records(readers, pipe.weirds.capture))
    pipe.finish()
    # the factory is asked only for what is recognised (DICOM, and HTTP for DICOMweb)
    assert decided == {11112: "dicom", 4242: "dicom", 8080: "http"}
    assert sinks_after_decision[5555] is None  # the refused connection: nothing reads it


def test_history_stays_bounded_under_a_flood_of_resets() -> None:
    """200,000 RSTs with distinct sequence numbers on one 4-tuple: the letter
    repeats only at counts 1, 2, 10, 100, ... (it was one letter each: a 200,000-letter cell)."""
    drv = Driver(with_sink=False)
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    drv.seg(1.0, ACK, 101, 901)
    flow = next(iter(drv.table.flows.values()))
    for i in range(200_000):
        flow.packet(1, 1.0 + i * 1e-6, 5000 + i, 0, RST, 0, None, 0, 0, 40)
    assert len(flow.history) < 20 and flow.history.count("r") == 2 + 5  # 1, 2, 10 ... 100,000


def test_flows_closed_by_fin_are_not_labelled_evicted() -> None:
    """Under flow-table pressure a flow that already ended with FIN (lingering for late ACKs)
    is finished as ``fin``; only open flows are evicted."""
    limits = Limits(max_flows=2)
    drv = Driver(limits=limits, with_sink=False)
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    drv.seg(1.0, ACK | FIN, 101, 901)
    drv.seg(1.0, ACK | FIN, 901, 102, from_client=False)
    for port in (41000, 41001, 41002):
        drv.seg(1.1, SYN, 5000, sport=port)
    drv.finish()
    reasons = {c.orig_p: c.end_reason for c in drv.conns}
    assert reasons[40000] == "fin"
    assert "evicted" in reasons.values()  # the table still had to make room once more
