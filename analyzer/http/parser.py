"""A passive HTTP/1.x parser: both directions of one connection in, events out (sans-IO).

h11 does the parsing (request and status lines, headers, Content-Length, chunked, keep-alive,
pipelining, 100-continue, read-until-close). h11 is written for one endpoint, so an observer
runs two: a SERVER-role connection reads the client's requests, a CLIENT-role connection the
server's responses. Each must look as if it took part:

- after each request, the server side "answers" with an empty response, so the next
  (pipelined) request can be read;
- before each response, the client side "sends" a copy of the request it answers (method,
  target, version, ``Host``, ``Connection`` and ``Expect`` only: what decides how the response
  is framed; a HEAD answer has no body).

The tolerant layer over h11: a protocol error or a lost segment in one direction is an
anomaly; that direction is then scanned for the next request line (``METHOD SP target SP
HTTP/1.x``) or status line (``HTTP/1.x SP ddd``) and parsing starts over there, so one bad
exchange does not cost the connection's others. Headers are capped by h11's
``max_incomplete_event_size``; bodies are handed on in pieces as they come, never buffered.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import h11

MAX_HEADERS = 64 << 10
MAX_SCAN = 64 << 10
"""Bytes kept while looking for the next message start after an error."""
MAX_WAITING = 1 << 20
"""Response bytes held while their request has not been seen."""
REQUEST_LINE = re.compile(
    rb"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|TRACE) [^ \r\n]+ HTTP/1\.[01]\r\n"
)
STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d\d\d")
METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"TRACE ")


def looks_like_http_request(head: bytes) -> bool:
    """The first bytes of a client's stream are an HTTP/1.x request line (or its start)."""
    return head.startswith(METHODS) and (b" HTTP/1." in head or b"\r\n" not in head)


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    ts: float
    method: str
    target: str
    version: str
    headers: Headers
    """Names lower-cased, values as sent (latin-1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHead:
    ts: float
    status: int
    reason: str
    version: str
    headers: Headers
    informational: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    ts: float
    direction: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnd:
    ts: float
    direction: int
    complete: bool = True
    """False: the message was cut (gap, error or end of stream)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAnomaly:
    ts: float
    direction: int
    name: str
    detail: str


HttpEvent = RequestHead | ResponseHead | Body | MessageEnd | HttpAnomaly


def _error_name(exc: h11.RemoteProtocolError) -> str:
    """h11's refusal of a head over ``max_incomplete_event_size`` has a name of its own."""
    return "http_headers_too_large" if "too long" in str(exc) else "http_protocol_error"


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    return tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)


class HttpParser:
    def __init__(self) -> None:
        self.server = self._conn(h11.SERVER)
        self.client = self._conn(h11.CLIENT)
        self.requests: deque[h11.Request] = deque()
        """Requests whose response has not begun, oldest first."""
        self.waiting = bytearray()
        """Response bytes that came before the request they answer."""
        self.lost = [False, False]
        """The direction lost its place (error or gap): scan for the next message start."""
        self.scan = [bytearray(), bytearray()]
        self.open = [False, False]
        """A message of the direction began and did not end."""
        self._out: list[HttpEvent] = []
        self.requests_seen = 0
        self.switched = False
        """The connection switched protocols (CONNECT, Upgrade): nothing more is parsed."""

    @staticmethod
    def _conn(role: type[h11.CLIENT] | type[h11.SERVER]) -> h11.Connection:
        return h11.Connection(role, max_incomplete_event_size=MAX_HEADERS)

    # -- input ------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts: float) -> list[HttpEvent]:
        self._out = []
        if self.switched:
            return self._out
        if self.lost[direction]:
            data = self._resync(direction, data, ts)
            if not data:
                return self._out
        if direction == 0:
            self._requests(data, ts)
        else:
            self.waiting += data
            self._responses(ts)
        return self._out

    def gap(self, direction: int, ts: float, length: int) -> list[HttpEvent]:
        self._out = []
        if self.switched:
            return self._out
        self._anomaly(ts, direction, "http_stream_gap", f"{length} bytes lost; resynchronising")
        self._lose(direction, ts)
        return self._out

    def close(self, ts: float) -> list[HttpEvent]:
        """The connection ended: a response read until close ends here."""
        self._out = []
        if not self.lost[1] and self.client.our_state in (h11.DONE, h11.MUST_CLOSE):
            try:
                self.client.receive_data(b"")
                self._client_events(ts)
            except h11.RemoteProtocolError:
                pass
        for d in (0, 1):
            if self.open[d]:
                self._end(ts, d, complete=False)
        if self.waiting.strip():
            self._anomaly(
                ts, 1, "http_response_without_request", f"{len(self.waiting)} response bytes"
            )
        return self._out

    # -- requests ---------------------------------------------------------------------

    def _requests(self, data: bytes, ts: float) -> None:
        try:
            while data:  # each round after an error starts further on: it ends
                data = self._request_bytes(data, ts)
        finally:
            if self.waiting:
                self._responses(ts)

    def _request_bytes(self, data: bytes, ts: float) -> bytes:
        """Parse requests from ``data``; after an error, return the bytes to try again from."""
        try:
            self.server.receive_data(data)
            while True:
                ev = self.server.next_event()
                if ev is h11.NEED_DATA:
                    return b""
                if ev is h11.PAUSED:
                    before = (self.server.our_state, self.server.their_state)
                    self._answer()
                    if (self.server.our_state, self.server.their_state) == before:
                        self._opaque(ts)  # CONNECT or Upgrade: what follows is not HTTP
                        return b""
                    continue
                if isinstance(ev, h11.Request):
                    self._header_size(ts, 0, ev.headers)
                    self.requests_seen += 1
                    self.open[0] = True
                    self.requests.append(self._mirror(ev))
                    self._out.append(
                        RequestHead(
                            ts=ts,
                            method=ev.method.decode("latin-1"),
                            target=ev.target.decode("latin-1"),
                            version=ev.http_version.decode("latin-1"),
                            headers=_headers(list(ev.headers)),
                        )
                    )
                elif isinstance(ev, h11.Data):
                    self._out.append(Body(ts=ts, direction=0, data=bytes(ev.data)))
                elif isinstance(ev, h11.EndOfMessage):
                    self._end(ts, 0)
                    self._answer()
                elif isinstance(ev, h11.ConnectionClosed):
                    return b""
        except h11.RemoteProtocolError as exc:
            self._anomaly(ts, 0, _error_name(exc), f"request: {exc}")
            self._lose(0, ts)
            return self._resync(0, data[1:], ts)  # the next request may be in these bytes

    def _answer(self) -> None:
        """The server side's stand-in answer, so that h11 reads the next request."""
        s = self.server
        if s.their_state is h11.DONE and s.our_state is h11.SEND_RESPONSE:
            s.send(h11.Response(status_code=204, headers=[]))
            s.send(h11.EndOfMessage())
        if s.our_state is h11.DONE and s.their_state is h11.DONE:
            s.start_next_cycle()

    @staticmethod
    def _mirror(req: h11.Request) -> h11.Request:
        """The request as the client side "sends" it: h11 sends HTTP/1.1 only, so an HTTP/1.0
        request becomes 1.1 with ``Connection: close`` (its response is framed the same)."""
        keep = [(k, v) for k, v in req.headers if k in (b"host", b"connection", b"expect")]
        if not any(k == b"host" for k, _ in keep):
            keep.append((b"host", b"-"))
        if req.http_version != b"1.1":
            keep = [(k, v) for k, v in keep if k != b"connection"] + [(b"connection", b"close")]
        return h11.Request(method=req.method, target=req.target, headers=keep)

    # -- responses --------------------------------------------------------------------

    def _responses(self, ts: float) -> None:
        while self.waiting and not self.lost[1]:
            c = self.client
            if c.our_state is h11.IDLE:
                if not self.requests:
                    if len(self.waiting) > MAX_WAITING:
                        self._anomaly(
                            ts, 1, "http_response_without_request", f"{len(self.waiting)} bytes"
                        )
                        self.waiting.clear()
                        self._lose(1, ts)
                    return
                try:
                    c.send(self.requests.popleft())
                    c.send(h11.EndOfMessage())
                except h11.LocalProtocolError as exc:  # a request h11 will not frame
                    self._anomaly(ts, 1, "http_protocol_error", f"request not mirrored: {exc}")
                    self._lose(1, ts)
                    return
            data, self.waiting = bytes(self.waiting), bytearray()
            try:
                c.receive_data(data)
                if not self._client_events(ts):
                    return
            except h11.RemoteProtocolError as exc:
                self._anomaly(ts, 1, _error_name(exc), f"response: {exc}")
                self._lose(1, ts)
                self.waiting = bytearray(self._resync(1, data[1:], ts))
                continue

    def _client_events(self, ts: float) -> bool:
        """Read the client side's events; True when a response ended and bytes for the next
        one may be left in h11's buffer (moved back to ``waiting``)."""
        c = self.client
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                if ev is h11.PAUSED and c.our_state is h11.DONE and c.their_state is h11.DONE:
                    rest = bytes(c.trailing_data[0])
                    self.client = self._conn(h11.CLIENT)
                    self.waiting[0:0] = rest
                    return bool(rest)
                return False
            if isinstance(ev, h11.InformationalResponse):
                self._out.append(self._head(ev, ts, informational=True))
            elif isinstance(ev, h11.Response):
                self._header_size(ts, 1, ev.headers)
                self.open[1] = True
                self._out.append(self._head(ev, ts))
            elif isinstance(ev, h11.Data):
                self._out.append(Body(ts=ts, direction=1, data=bytes(ev.data)))
            elif isinstance(ev, h11.EndOfMessage):
                self._end(ts, 1)
            elif isinstance(ev, h11.ConnectionClosed):
                return False

    @staticmethod
    def _head(
        ev: h11.Response | h11.InformationalResponse, ts: float, informational: bool = False
    ) -> ResponseHead:
        return ResponseHead(
            ts=ts,
            status=ev.status_code,
            reason=ev.reason.decode("latin-1"),
            version=ev.http_version.decode("latin-1"),
            headers=_headers(list(ev.headers)),
            informational=informational,
        )

    # -- damage -----------------------------------------------------------------------

    def _header_size(self, ts: float, direction: int, headers: h11._headers.Headers) -> None:
        size = sum(len(k) + len(v) + 4 for k, v in headers.raw_items())
        if size > MAX_HEADERS:
            self._anomaly(ts, direction, "http_headers_too_large", f"{size} bytes of headers")

    def _end(self, ts: float, direction: int, complete: bool = True) -> None:
        self.open[direction] = False
        self._out.append(MessageEnd(ts=ts, direction=direction, complete=complete))

    def _opaque(self, ts: float) -> None:
        self.switched = True
        self._anomaly(ts, 0, "http_protocol_switch", "CONNECT or Upgrade: the rest is not read")
        for d in (0, 1):
            if self.open[d]:
                self._end(ts, d, complete=False)
        self.waiting.clear()

    def _anomaly(self, ts: float, direction: int, name: str, detail: str) -> None:
        self._out.append(HttpAnomaly(ts=ts, direction=direction, name=name, detail=detail[:200]))

    def _lose(self, direction: int, ts: float) -> None:
        """Give up the direction's place: end what was open, scan for the next start."""
        if self.open[direction]:
            self._end(ts, direction, complete=False)
        self.lost[direction] = True
        self.scan[direction] = bytearray()
        if direction == 0:
            self.server = self._conn(h11.SERVER)
        else:
            self.client = self._conn(h11.CLIENT)
            self.waiting.clear()

    def _resync(self, direction: int, data: bytes, ts: float) -> bytes:
        buf = self.scan[direction]
        buf += data
        pattern = REQUEST_LINE if direction == 0 else STATUS_LINE
        m = pattern.search(buf)
        if m is None:
            if len(buf) > MAX_SCAN:
                del buf[: len(buf) - 64]
            return b""
        rest = bytes(buf[m.start() :])
        self.scan[direction] = bytearray()
        self.lost[direction] = False
        if direction == 1:
            self.requests.clear()  # which request a resynchronised response answers is unknown
            self.requests.append(h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"-")]))
        return rest
