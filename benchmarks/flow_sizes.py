"""Measure what an open flow and an open association cost (tracemalloc), the figures
``analyzer/memory.py`` and ``analyzer/dicom/sizes.py`` are rounded up from.

    python benchmarks/flow_sizes.py
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.config import Config  # noqa: E402
from analyzer.logs.records import RECORDS  # noqa: E402
from analyzer.net.checksum import Checksums  # noqa: E402
from analyzer.run.pipeline import Pipeline  # noqa: E402
from tests.hostile import _rq, frame  # noqa: E402

SERVER = bytes([10, 0, 0, 2])


class Null:
    def add(self, row: object) -> None:
        pass


def per_flow(n: int, contexts: int | None) -> float:
    """Bytes held per open flow: handshake only (``contexts`` None) or an A-ASSOCIATE-RQ of
    that many contexts left unanswered."""
    cfg = dataclasses.replace(Config(), checksums=Checksums.IGNORE, salt=b"flow-sizes")
    p = Pipeline(cfg, {k: Null() for k in RECORDS})
    body = _rq(contexts) if contexts is not None else b""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        client, port, ts = bytes([10, 1, i >> 8 & 255, i & 255]), 20000 + i, 1000.0 + i * 1e-4
        frames = [
            frame(client, SERVER, port, 104, 100, 0, 0x02),
            frame(SERVER, client, 104, port, 500, 101, 0x12),
        ]
        if body:
            frames += [
                frame(client, SERVER, port, 104, 101 + k, 501, 0x18, body[k : k + 1448])
                for k in range(0, len(body), 1448)
            ]
        p.feed([(ts, 1, f, len(f)) for f in frames])
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / n


def main() -> None:
    tcp = per_flow(2000, None)
    one = per_flow(2000, 1)
    many = per_flow(1000, 128)
    print(f"open TCP flow (handshake only):        {tcp:8,.0f} bytes")
    print(f"open association, 1 context:           {one:8,.0f} bytes")
    print(f"open association, 128 contexts:        {many:8,.0f} bytes")
    print(f"each further context:                  {(many - one) / 127:8,.0f} bytes")


if __name__ == "__main__":
    main()
