"""``dicom-analyzer carve``: every frame of the given flows, both directions, IP fragments
included, from any number of inputs (rotated files merged in time order) into one pcapng.

Three passes over the inputs (files only: standard input cannot be read three times):

1. the analysis itself, with every table discarded but the ``conn`` rows of the flows asked
   for, so that flow uids are exactly those ``analyze`` gives (port reuse included): each flow
   is its 4-tuple and its first and last packet times;
2. the frames are decoded by the analysis' own decoder (every link type it reads), noting for
   each frame its TCP 4-tuple or, for an IP fragment, its datagram; a datagram belongs to the
   4-tuple of the TCP segment it reassembles into;
3. the chosen frames are written as they were captured. The first frame of each flow carries
   a comment naming the flow and, with ``--finding``, the findings behind it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.capture import CaptureReader, Record, merged_records, open_inputs
from analyzer.config import Config
from analyzer.errors import InputError
from analyzer.export.pcapng import PcapngWriter
from analyzer.logs.records import Conn
from analyzer.net.decode import Decoder
from analyzer.net.fragments import FragKey, FragmentReassembler
from analyzer.run.pipeline import Pipeline

TcpKey = tuple[bytes, int, bytes, int]
SLACK = 1e-6
"""Seconds around a flow's first and last packet times (rounding of ts + duration)."""


@dataclass(frozen=True, slots=True)
class Target:
    uid: str
    conn: Conn
    key: TcpKey
    """Normalised: the lower (address, port) first."""


def _normal(a: bytes, ap: int, b: bytes, bp: int) -> TcpKey:
    return (a, ap, b, bp) if (a, ap) <= (b, bp) else (b, bp, a, ap)


class _Discard:
    def add(self, row: object) -> None:
        pass


class _Chosen:
    def __init__(self, uids: frozenset[str]) -> None:
        self.uids = uids
        self.rows: dict[str, Conn] = {}

    def add(self, row: Conn) -> None:
        if row.uid in self.uids:
            self.rows[row.uid] = row


def _records(inputs: list[str], weird: Any) -> Iterator[Record]:
    readers, _ = open_inputs(inputs)
    return merged_records(readers, weird)


def find_flows(config: Config, inputs: list[str], uids: frozenset[str]) -> dict[str, Target]:
    """Pass 1: the flows' 4-tuples and times, as ``analyze`` names them."""
    from analyzer.logs.records import TABLES

    chosen = _Chosen(uids)
    writers: dict[str, Any] = {name: _Discard() for name in TABLES}
    writers["conn"] = chosen
    pipe = Pipeline(config, writers)
    pipe.feed(_records(inputs, pipe.weirds.capture))
    pipe.finish()
    targets = {}
    for uid, c in chosen.rows.items():
        a, b = ipaddress.ip_address(c.orig_h).packed, ipaddress.ip_address(c.resp_h).packed
        targets[uid] = Target(uid, c, _normal(a, c.orig_p, b, c.resp_p))
    return targets


class _Noting(FragmentReassembler):
    """The real reassembler, noting which datagram the current frame is a piece of."""

    current: FragKey | None = None

    def add(self, ts: float, key: FragKey, offset: int, more: bool, data: bytes) -> bytes | None:
        self.current = key
        return super().add(ts, key, offset, more, data)


def choose_frames(config: Config, inputs: list[str], targets: dict[str, Target]) -> dict[int, str]:
    """Pass 2: frame index -> flow uid for every frame of the targets."""
    by_key: dict[TcpKey, list[Target]] = {}
    for t in targets.values():
        by_key.setdefault(t.key, []).append(t)
    lim = config.limits
    noting = _Noting(
        max_datagrams=lim.max_fragment_datagrams,
        max_bytes=lim.max_fragment_bytes,
        timeout=lim.fragment_timeout,
        report=lambda *a: None,
    )
    seen: list[TcpKey | None] = [None]

    def on_tcp(ts: float, src: bytes, sport: int, dst: bytes, dport: int, *rest: object) -> None:
        seen[0] = _normal(src, sport, dst, dport)

    decoder = Decoder(on_tcp, lambda *a: None, noting)
    chosen: dict[int, str] = {}
    pieces: dict[FragKey, list[int]] = {}
    owner: dict[FragKey, str] = {}

    def flow_at(key: TcpKey, ts: float) -> str | None:
        for t in by_key.get(key, ()):
            if t.conn.ts - SLACK <= ts <= t.conn.ts + t.conn.duration + SLACK:
                return t.uid
        return None

    for i, (ts, linktype, buf, wire_len) in enumerate(_records(inputs, lambda *a: None)):
        seen[0] = None
        noting.current = None
        try:
            decoder.packet(ts, linktype, buf, wire_len)
        except Exception:  # a frame the analysis could not decode belongs to no flow
            continue
        frag, key = noting.current, seen[0]
        uid = flow_at(key, ts) if key is not None else None
        if frag is not None:
            pieces.setdefault(frag, []).append(i)
            if uid is not None:
                owner[frag] = uid
        elif uid is not None:
            chosen[i] = uid
    for frag, uid in owner.items():
        for i in pieces.get(frag, ()):
            chosen[i] = uid
    return chosen


def finding_notes(path: Path) -> dict[str, list[str]]:
    """flow uid -> "rule (severity): title" lines, from a finding table or alerts.jsonl."""
    import polars as pl

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            rows = pl.read_parquet(path).to_dicts()
        elif suffix == ".csv":
            rows = pl.read_csv(path).to_dicts()
        else:
            with path.open(encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{path}: not a finding table or alerts file: {exc}") from None
    notes: dict[str, list[str]] = {}
    for r in rows:
        if not isinstance(r, dict) or "rule" not in r:
            raise InputError(f"{path}: not a finding table or alerts file (no rule column)")
        uids = r.get("uids") or []
        if isinstance(uids, str):
            uids = uids.split(";")
        line = f"{r['rule']} ({r.get('severity')}): {r.get('title')}"
        for uid in {r.get("uid"), *uids} - {None, ""}:
            if line not in notes.setdefault(str(uid), []):
                notes[str(uid)].append(line)
    return notes


@dataclass(frozen=True, slots=True)
class CarveResult:
    frames: int
    flows: dict[str, int]
    """Frames written per flow asked for (0: not found)."""


def carve(
    config: Config,
    inputs: list[str],
    out: Path,
    uids: list[str],
    findings: Path | None = None,
) -> CarveResult:
    if "-" in inputs:
        raise InputError("-: carve reads its inputs more than once; give files")
    readers: list[CaptureReader]
    readers, _ = open_inputs(inputs)  # bad inputs fail here, before any work
    del readers
    notes = finding_notes(findings) if findings is not None else {}
    wanted = frozenset(uids)
    targets = find_flows(config, inputs, wanted)
    chosen = choose_frames(config, inputs, targets)
    writer = PcapngWriter(out)
    counts = dict.fromkeys(uids, 0)
    try:
        for i, (ts, linktype, buf, wire_len) in enumerate(_records(inputs, lambda *a: None)):
            uid = chosen.get(i)
            if uid is None:
                continue
            comment = None
            if counts[uid] == 0:
                c = targets[uid].conn
                lines = [
                    f"dicom-analyzer flow {uid}: {c.orig_h}:{c.orig_p} -> {c.resp_h}:{c.resp_p}"
                    f" ({c.service or 'unknown service'})",
                    *(f"finding: {n}" for n in notes.get(uid, [])),
                ]
                comment = "\n".join(lines)
            writer.frame(ts, linktype, buf, wire_len, comment)
            counts[uid] += 1
    finally:
        writer.close()
    return CarveResult(writer.frames, counts)
