"""Just enough TLS to say which version a DICOM-port TLS flow used and which server it named.

ClientHello (RFC 8446 4.1.2): record type 22, handshake type 1, legacy_version(2), random(32),
session id, cipher suites, compression methods, extensions: server_name (0) and
supported_versions (43). ServerHello: handshake type 2, legacy_version, and in TLS 1.3 the
real version in supported_versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.dicom.items import wire_text

MAX_HELLO = 16 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    """What the hellos said: record and offered versions, the negotiated one, the server name."""

    record_version: int | None = None
    client_max_version: int | None = None
    negotiated_version: int | None = None
    sni: str | None = None


def _extensions(body: bytes, pos: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    if pos + 2 > len(body):
        return out
    end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        etype, elen = (
            int.from_bytes(body[pos : pos + 2], "big"),
            int.from_bytes(body[pos + 2 : pos + 4], "big"),
        )
        out[etype] = body[pos + 4 : pos + 4 + elen]
        pos += 4 + elen
    return out


def _hello(stream: bytes, kind: int) -> tuple[int, dict[int, bytes]] | None:
    """(legacy version, extensions) of the first handshake message of ``kind`` in ``stream``."""
    if len(stream) < 9 or stream[0] != 22 or stream[5] != kind:
        return None
    body = stream[9 : 5 + int.from_bytes(stream[3:5], "big")]
    if len(body) < 35:
        return None
    version = int.from_bytes(body[0:2], "big")
    pos = 34
    pos += 1 + body[pos]  # session id
    if kind == 1:
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
        pos += 1 + (body[pos] if pos < len(body) else 0)  # compression methods
    else:
        pos += 3  # cipher suite, compression method
    return version, _extensions(body, pos)


def parse(client: bytes, server: bytes) -> TlsInfo:
    record = int.from_bytes(client[1:3], "big") if len(client) >= 3 else None
    sni = client_max = negotiated = None
    ch = _hello(client, 1)
    if ch is not None:
        client_max, ext = ch
        if 43 in ext and ext[43]:
            versions = [
                int.from_bytes(ext[43][i : i + 2], "big") for i in range(1, 1 + ext[43][0], 2)
            ]
            real = [
                v
                for v in versions
                if v & 0x0F0F == 0x0303 or v in (0x0300, 0x0301, 0x0302, 0x0303, 0x0304)
            ]
            client_max = max(real) if real else client_max
        if 0 in ext and len(ext[0]) > 5:
            sni = wire_text(ext[0][5 : 5 + int.from_bytes(ext[0][3:5], "big")])
    sh = _hello(server, 2)
    if sh is not None:
        negotiated, ext = sh
        if 43 in ext and len(ext[43]) >= 2:
            negotiated = int.from_bytes(ext[43][:2], "big")
    return TlsInfo(
        record_version=record, client_max_version=client_max, negotiated_version=negotiated, sni=sni
    )


class TlsSink:
    """Collects the first bytes of each direction of a TLS flow, then reports its hellos."""

    __slots__ = ("bufs", "report", "done", "unread")

    def __init__(self, report: Callable[[TlsInfo], None]) -> None:
        self.bufs = [bytearray(), bytearray()]
        self.report = report
        self.done = False
        self.unread = [0, 0]

    def data(self, direction: int, ts: float, data: bytes) -> None:
        buf = self.bufs[direction]
        if len(buf) < MAX_HELLO:
            buf += data[: MAX_HELLO - len(buf)]
            if len(buf) >= MAX_HELLO:
                self.unread[direction] = 1 << 62  # the hello is kept: the rest is counted

    def skip(self, direction: int, n: int) -> None:
        pass

    def cross(self, direction: int, data: bytes) -> bool:
        return False

    def footprint(self) -> int:
        return len(self.bufs[0]) + len(self.bufs[1])

    def gap(self, direction: int, ts: float, length: int) -> None:
        pass

    def close(self, ts: float, reason: str) -> None:
        if not self.done:
            self.done = True
            self.report(parse(bytes(self.bufs[0]), bytes(self.bufs[1])))
