"""``live`` reads dumpcap's pipe in batches (``read_pcapng_batches``): the same records as
``read_pcapng``, at most ``most`` at a time, and every batch handed over before the next read
of the pipe (which may wait for traffic that never comes)."""

from __future__ import annotations

from pathlib import Path

from analyzer.capture.formats import read_pcapng, read_pcapng_batches
from tests.helpers import CAPTURES

PCAPNG = sorted(CAPTURES.glob("*.pcapng"))


class Pipe:
    """A stream that hands out its bytes in small reads and counts them."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.pos, self.reads = data, piece, 0, 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        out = self.data[self.pos : self.pos + min(n, self.piece)]
        self.pos += len(out)
        return out


def _records(path: Path) -> list[tuple[float, int, bytes, int]]:
    with path.open("rb") as fh:
        return list(read_pcapng(fh, lambda *a: None, path.name))


def test_batches_hold_the_same_records() -> None:
    assert PCAPNG
    for path in PCAPNG:
        whole = _records(path)
        for piece, most in ((1 << 20, 64), (1500, 64), (700, 3)):
            pipe = Pipe(path.read_bytes(), piece)
            batches = list(read_pcapng_batches(pipe, lambda *a: None, path.name, most))  # type: ignore[arg-type]
            assert all(0 < len(b) <= most for b in batches)
            assert [r for b in batches for r in b] == whole, (path.name, piece, most)


class WaitingPipe(Pipe):
    """A pipe whose bytes are all there, and whose next read would wait (here: fails) until
    the test lets it: dumpcap has written everything it has seen so far."""

    released = False

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.data) and not self.released:
            raise AssertionError("a read that would wait, with records not handed over")
        return super().read(n)


def test_a_batch_never_waits_for_the_next_read() -> None:
    for path in PCAPNG:
        whole = _records(path)
        for piece in (4096, 1 << 20):
            pipe = WaitingPipe(path.read_bytes(), piece)
            got: list[tuple[float, int, bytes, int]] = []
            for batch in read_pcapng_batches(pipe, lambda *a: None, path.name):  # type: ignore[arg-type]
                got += batch
                if len(got) == len(whole):
                    pipe.released = True  # every record arrived before the waiting read
            assert got == whole
