"""``live`` decodes HTTP like DIMSE, with one process and with workers: DICOMweb-shaped requests
with Basic auth to a real HTTP server on loopback raise their alerts while live runs, and the
``http`` table equals ``analyze`` on tcpdump's capture of the same traffic."""

from __future__ import annotations

import base64
import http.server
import signal
import threading
import urllib.request
from pathlib import Path

import pytest

from analyzer.report.load import load_tables
from tests.live.test_live import (
    alerts,
    free_port,
    needs_capture,
    start_live,
    tcpdump,
    wait_for,
)
from tests.report.conftest import analyze_to


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@needs_capture
@pytest.mark.parametrize("workers", ["1", "2"])
def test_live_decodes_http(tmp_path: Path, workers: str) -> None:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bpf = f"tcp port {port}"
    out = tmp_path / "live"
    ref = tcpdump(tmp_path / "ref.pcap", bpf)
    live, _, stderr = start_live(out, bpf, "--workers", workers)
    secret = base64.b64encode(b"radiology:not-for-logs").decode()
    try:
        for target in ("studies?PatientName=*", "studies?00100010=*&limit=5", "series"):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/dicom-web/{target}",
                headers={"Authorization": f"Basic {secret}"},
            )
            urllib.request.urlopen(req, timeout=5).read()
        wait_for(
            "credential alert",
            lambda: any("cleartext_credentials" in a for a in alerts(out / "alerts.jsonl")),
            20,
        )
    finally:
        live.send_signal(signal.SIGTERM)
        rc = live.wait(60)
        ref.send_signal(signal.SIGTERM)
        ref.wait(10)
        server.shutdown()
    assert rc == 0, stderr.read_text()
    tables = load_tables(out)
    offline = load_tables(analyze_to(tmp_path / "ref.pcap", tmp_path / "offline"))
    cols = ["method", "uri", "query_keys", "status", "auth_scheme", "dicomweb"]
    ours = sorted(tables["http"].select(cols).rows())
    assert ours == sorted(offline["http"].select(cols).rows())
    assert len(ours) == 3 and {r[-1] for r in ours} == {"QIDO-RS"}
    rules = set(tables["finding"]["rule"])
    assert {"cleartext_credentials", "wildcard_query"} <= rules
    for path in out.rglob("*"):
        if path.is_file():
            assert b"not-for-logs" not in path.read_bytes()
