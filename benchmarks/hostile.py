"""The hostile captures at full scale: peak RSS against the memory budget, time, and the
ordinary association among each attack compared with a clean run of it alone.

    python benchmarks/hostile.py [--scale 1.0] [--only NAME ...] [--budget-mb 512] [--keep]

Captures are written to benchmarks/data/hostile/ (deleted afterwards unless --keep). One row
per attack; exit 1 when a run fails, exceeds the budget or changes the ordinary association.
Also times the reassembly of a 64 KB datagram in 8-byte fragments (in process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import hostile  # noqa: E402

TABLES = ("conn", "dicom_assoc", "dicom_context", "dimse", "dicom_object", "phi")


def measure(args: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "measure.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def ordinary(outdir: Path) -> dict[str, list[dict[str, object]]]:
    import polars as pl

    conn = pl.read_parquet(outdir / "conn.parquet")
    mine = (pl.col("orig_p") == hostile.ORDINARY_PORT) & (pl.col("orig_h") == hostile.ORDINARY_IP)
    uid = conn.filter(mine)["uid"][0]
    return {
        t: pl.read_parquet(outdir / f"{t}.parquet").filter(pl.col("uid") == uid).to_dicts()
        for t in TABLES
    }


def fragment_seconds() -> float:
    from analyzer.net.fragments import FragmentReassembler

    data = bytes(range(256)) * 255  # 65,280 bytes: the largest a datagram may carry
    pieces = [(o, data[o : o + 8]) for o in range(0, len(data), 8)]
    frags = FragmentReassembler(
        max_datagrams=16, max_bytes=1 << 20, timeout=30.0, report=lambda *a: None
    )
    start = time.perf_counter()
    whole = None
    for i, (o, piece) in enumerate(reversed(pieces)):
        whole = frags.add(1.0 + i * 1e-6, (b"a", b"b", 1, 6), o, o + 8 < len(data), piece)
    assert whole == data
    return time.perf_counter() - start


def junk_items_seconds(megabytes: int = 1) -> float:
    """An A-ASSOCIATE-RQ body of runs of zeros alternating with junk items (linear, not
    quadratic, in its size)."""
    from analyzer.dicom.items import decode_associate
    from tests.dicom import fixtures as fx

    rq = fx.A_ASSOCIATE_RQ_PLAIN
    body = rq[6:74] + (b"\x00" * 4 + b"\x7f\x00\x00\x00") * (megabytes * 131072)
    start = time.perf_counter()
    decode_associate(1, body)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only", nargs="*", choices=sorted(hostile.ATTACKS))
    ap.add_argument("--budget-mb", type=int, default=512)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    data = ROOT / "benchmarks" / "data" / "hostile"
    data.mkdir(parents=True, exist_ok=True)
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    # a fixed salt: hashed values must compare across the two runs
    config.write_text(
        f'[limits]\nmemory_budget = {a.budget_mb << 20}\n[privacy]\nsalt = "hostile-bench"\n'
    )
    failed = False
    print(f"64 KB datagram in 8-byte fragments, last first: {fragment_seconds():.3f} s")
    one, four = junk_items_seconds(1), junk_items_seconds(4)
    print(f"A-ASSOCIATE-RQ of zero runs and junk items: 1 MB {one:.2f} s, 4 MB {four:.2f} s")
    print(
        "| attack | capture | packets | seconds | peak RSS | budget | ordinary association | exit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in a.only or sorted(hostile.ATTACKS):
        pcap = hostile.build(name, data / f"{name}.pcap", a.scale)
        alone = hostile.build_ordinary(
            data / f"{name}-alone.pcap", hostile.middle_ts(name, a.scale)
        )
        out, out_alone = data / f"{name}.out", data / f"{name}-alone.out"
        run = ["-m", "analyzer", "analyze", "-q", "--workers", "1", "--config", str(config)]
        m = measure([sys.executable, *run, str(pcap), "-o", str(out)])
        measure([sys.executable, *run, str(alone), "-o", str(out_alone)])
        same = m["rc"] == 0 and ordinary(out) == ordinary(out_alone)
        rss = float(str(m["peak_rss_mb"]))
        within = rss <= a.budget_mb
        import dpkt

        with pcap.open("rb") as fh:
            packets = sum(1 for _ in dpkt.pcap.Reader(fh))
        print(
            f"| {name} | {pcap.stat().st_size / 1e6:,.0f} MB | {packets:,} | "
            f"{float(str(m['seconds'])):.1f} | {rss:,.0f} MB | {'within' if within else 'OVER'} "
            f"{a.budget_mb} MB | {'identical' if same else 'CHANGED'} | {m['rc']} |"
        )
        failed |= not (same and within and m["rc"] == 0)
        if not a.keep:
            for p in (pcap, alone):
                p.unlink()
            for d in (out, out_alone):
                subprocess.run(["rm", "-rf", str(d)], check=True)
    config.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
