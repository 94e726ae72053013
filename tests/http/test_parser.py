"""The passive HTTP parser: every way of chopping a conversation gives the same exchanges;
pipelining, chunked bodies, 100-continue, HEAD, read-until-close; damage is an anomaly and the
next exchange survives."""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence

import pytest

from analyzer.http.bodies import BodyReader, dicom_json, media_type
from analyzer.http.dicomweb import QIDO, STOW, WADO_RS, WADO_URI, classify
from analyzer.http.parser import (
    Body,
    HttpAnomaly,
    HttpEvent,
    HttpParser,
    MessageEnd,
    RequestHead,
    ResponseHead,
)

GET_PIPELINED = (
    b"GET /dicom-web/studies?PatientName=* HTTP/1.1\r\nHost: pacs\r\n\r\n"
    b"HEAD /x HTTP/1.1\r\nHost: pacs\r\n\r\n"
    b"POST /dicom-web/studies HTTP/1.1\r\nHost: pacs\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)
ANSWERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\n\r\n[]"
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # HEAD: no body despite the length
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


def run(chunks: Sequence[tuple[int, bytes]]) -> list[tuple[object, ...]]:
    p = HttpParser()
    events: list[HttpEvent] = []
    for d, data in chunks:
        events += p.feed(d, data, 0.0)
    events += p.close(1.0)
    return summarize(events)


def by_direction(events: list[tuple[object, ...]]) -> tuple[list[object], list[object]]:
    """The order within each direction is the parser's promise; across them it follows arrival."""
    sides: tuple[list[object], list[object]] = ([], [])
    for e in events:
        side = sides[0] if e[0] == "req" or e[1] == 0 else sides[1]
        last = side[-1] if side else None
        if e[0] == "body" and isinstance(last, tuple) and last[0] == "body":
            side[-1] = ("body", e[1], last[2] + e[2])  # type: ignore[operator]
        else:
            side.append(e)
    return sides


def summarize(events: list[HttpEvent]) -> list[tuple[object, ...]]:
    """Events with bodies joined per message (chunking may split a body's pieces)."""
    out: list[tuple[object, ...]] = []
    for ev in events:
        if isinstance(ev, Body):
            if out and out[-1][0] == "body" and out[-1][1] == ev.direction:
                out[-1] = ("body", ev.direction, out[-1][2] + ev.data)  # type: ignore[operator]
            else:
                out.append(("body", ev.direction, ev.data))
        elif isinstance(ev, RequestHead):
            out.append(("req", ev.method, ev.target))
        elif isinstance(ev, ResponseHead):
            out.append(("resp", ev.status, ev.informational))
        elif isinstance(ev, MessageEnd):
            out.append(("end", ev.direction, ev.complete))
        elif isinstance(ev, HttpAnomaly):
            out.append(("anomaly", ev.direction, ev.name))
    return out


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 30))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_pipelined_exchanges_whatever_the_segmentation() -> None:
    whole = run([(0, GET_PIPELINED), (1, ANSWERS)])
    assert [e for e in whole if e[0] in ("req", "resp")] == [
        ("req", "GET", "/dicom-web/studies?PatientName=*"),
        ("req", "HEAD", "/x"),
        ("req", "POST", "/dicom-web/studies"),
        ("resp", 200, False),
        ("resp", 200, False),
        ("resp", 200, False),
    ]
    assert ("body", 0, b"hello world") in whole and ("body", 1, b"abc") in whole
    assert not [e for e in whole if e[0] == "anomaly"]
    rng = random.Random(3)
    for _ in range(50):
        req, resp = splits(GET_PIPELINED, rng), splits(ANSWERS, rng)
        order = [(0, c) for c in req] + [(1, c) for c in resp]
        assert by_direction(run(order)) == by_direction(whole)
        # a response's bytes before its request's (a span port's reordering): the same
        assert by_direction(run([(1, c) for c in resp] + [(0, c) for c in req])) == by_direction(
            whole
        )


def test_byte_by_byte() -> None:
    whole = run([(0, GET_PIPELINED), (1, ANSWERS)])
    chunks = [(0, GET_PIPELINED[i : i + 1]) for i in range(len(GET_PIPELINED))]
    chunks += [(1, ANSWERS[i : i + 1]) for i in range(len(ANSWERS))]
    assert by_direction(run(chunks)) == by_direction(whole)


def test_expect_continue_and_read_until_close() -> None:
    req = (
        b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd"
        b"GET /old HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.0 200 OK\r\n\r\nuntil the connection closes"
    )
    got = run([(0, req), (1, resp)])
    assert ("resp", 100, True) in got and ("resp", 201, False) in got
    assert ("body", 1, b"until the connection closes") in got
    assert got[-1] == ("end", 1, True)


def test_garbage_then_a_good_exchange() -> None:
    req = b"GARBAGE\x00\x01 not http\r\n\r\nGET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    got = run([(0, req), (1, resp)])
    assert ("anomaly", 0, "http_protocol_error") in got
    assert ("req", "GET", "/ok") in got and ("body", 1, b"ok") in got


def test_gap_loses_one_exchange_not_the_next() -> None:
    p = HttpParser()
    ev = p.feed(0, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 0.0)
    ev += p.feed(1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", 0.0)
    ev += p.gap(1, 0.0, 5)
    ev += p.feed(0, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", 0.0)
    ev += p.feed(1, b"HTTP/1.1 204 No Content\r\n\r\n", 0.0)
    got = summarize(ev + p.close(1.0))
    assert ("anomaly", 1, "http_stream_gap") in got
    assert ("end", 1, False) in got and ("resp", 204, False) in got


def test_oversized_headers_are_an_anomaly() -> None:
    huge = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    got = run([(0, huge)])
    assert ("anomaly", 0, "http_headers_too_large") in got


def test_bodies_gzip_bomb_multipart_json() -> None:
    bomb = gzip.compress(b"\0" * (80 << 20))
    r = BodyReader("application/dicom+json", "gzip", 1 << 16)
    for i in range(0, len(bomb), 4096):
        r.feed(bomb[i : i + 4096])
    facts = r.finish(True)
    assert any(name == "http_decompression_bomb" for name, _ in facts.anomalies)
    assert facts.decoded_bytes <= 64 << 20
    r = BodyReader("multipart/related; type=application/dicom", None, 1 << 16)
    r.feed(b"--x\r\n\r\nabc")
    assert ("http_multipart_no_boundary", "multipart/related") in r.finish(True).anomalies
    r = BodyReader('multipart/related; boundary="b1"', None, 1 << 16)
    r.feed(b"--b1\r\nContent-Type: application/dicom+json\r\n\r\n[{}]\r\n--b1\r\n\r\nendless")
    facts = r.finish(False)
    assert facts.parts == 2 and facts.results == 1
    assert any(name == "http_multipart_unterminated" for name, _ in facts.anomalies)
    (ds,) = dicom_json(b'[{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}}]')
    assert ds.get("PatientName") == "DOE^JANE"
    assert media_type('multipart/related; type="application/dicom"; boundary=abc') == (
        "multipart/related",
        {"type": "application/dicom", "boundary": "abc"},
    )


@pytest.mark.parametrize(
    ("method", "target", "service", "level"),
    [
        ("GET", "/dicom-web/studies?PatientName=*", QIDO, "study"),
        ("GET", "/dicom-web/studies/1.2.3/series", QIDO, "series"),
        ("GET", "/dicom-web/studies/1.2.3/series/1.2.4/instances", QIDO, "instance"),
        ("GET", "/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5", WADO_RS, "instance"),
        ("GET", "/dicom-web/studies/1.2.3/metadata", WADO_RS, "study"),
        ("GET", "/rs/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/1", WADO_RS, "frames"),
        ("POST", "/dicom-web/studies", STOW, "study"),
        ("GET", "/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3", WADO_URI, "instance"),
        ("GET", "/index.html", None, None),
    ],
)
def test_dicomweb_classification(
    method: str, target: str, service: str | None, level: str | None
) -> None:
    t = classify(method, target)
    assert (t.service, t.level) == (service, level)


def test_query_attributes_by_keyword() -> None:
    t = classify("GET", "/dicom-web/studies?00100010=*&PatientID=&limit=10&includefield=all")
    assert t.attributes == ("PatientName", "PatientID")


def test_bogus_content_length_is_an_anomaly_and_the_connection_goes_on() -> None:
    req = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: lots\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    got = run([(0, req)])
    assert ("anomaly", 0, "http_protocol_error") in got and ("req", "GET", "/b") in got


def test_endless_chunked_body_is_streamed_not_held() -> None:
    """40 MB of chunks: handed on piece by piece; the parser holds no more than a chunk."""
    p = HttpParser()
    p.feed(0, b"POST /stow HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 0.0)
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    seen = 0
    for _ in range(640):
        for ev in p.feed(0, chunk, 0.0):
            if isinstance(ev, Body):
                seen += len(ev.data)
        assert len(p.server._receive_buffer) < 2 * len(chunk)
    assert seen == 640 * 0x10000


def test_damaged_conversations_never_raise_nor_hang() -> None:
    """Random bytes changed, cut or repeated in a real conversation, in random pieces."""
    rng = random.Random(5)
    base = [(0, GET_PIPELINED), (1, ANSWERS)]
    for _ in range(300):
        chunks: list[tuple[int, bytes]] = []
        for d, data in base:
            b = bytearray(data * rng.randint(1, 3))
            for _ in range(rng.randint(0, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            chunks += [(d, piece) for piece in splits(bytes(b), rng)]
        rng.shuffle(chunks)
        p = HttpParser()
        for d, piece in chunks:
            p.feed(d, piece, 0.0)
            if rng.random() < 0.05:
                p.gap(d, 0.0, 10)
        p.close(1.0)


def test_many_bad_requests_in_one_segment_do_not_recurse() -> None:
    bad = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n" * 5000
    got = run([(0, bad)])
    assert got.count(("anomaly", 0, "http_protocol_error")) > 100


def test_a_flow_accounts_for_the_body_it_holds() -> None:
    """The memory budget sees a dicom+json document being read (up to 8 MiB)."""
    from analyzer.logs.http_flow import HttpFlow
    from analyzer.logs.sinks import ListSink
    from analyzer.privacy import Hasher, PhiPolicy
    from tests.fuzz.targets import _FakeFlow

    sink = ListSink()
    h = HttpFlow(
        _FakeFlow(),
        sink,
        sink,
        sink,
        PhiPolicy(Hasher(b"k" * 32), False, False),
        lambda ex: None,
        4096,
    )  # type: ignore[arg-type]
    h.data(0, 1.0, b"GET /dicom-web/studies HTTP/1.1\r\nHost: h\r\n\r\n")
    h.data(
        1,
        1.0,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 9000000\r\n\r\n",
    )
    empty = h.footprint()
    h.data(1, 1.1, b"[" + b" " * 500_000)
    assert h.footprint() - empty >= 500_000
