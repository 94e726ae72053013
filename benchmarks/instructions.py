"""Instructions one ``analyze --workers 1`` run executes, counted by valgrind's callgrind.

    python benchmarks/instructions.py CAPTURE [--mb 40] [--baseline REV]

On this shared machine the wall time of one command swings by half from one minute to the
next; the instruction count of the same run stays within about 1% (hash seed fixed). The
first ``--mb`` MB of whole records of CAPTURE (a plain pcap file) are analysed under callgrind,
then a capture with no record (the start-up: imports, set-up), and the difference is what the
records cost. ``--baseline REV`` counts the same for a git revision (a temporary worktree) in
the same run. About a minute per count for 40 MB (callgrind runs some 50 times slower).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
RUN = "import sys; from analyzer.cli import main; sys.exit(main())"


def cut(capture: Path, mb: float, out: Path) -> int:
    """The file header and the first records of ``capture`` up to ``mb`` MB: how many."""
    limit = int(mb * 1_000_000)
    with capture.open("rb") as fh, out.open("wb") as dst:
        header = fh.read(24)
        order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        dst.write(header)
        written, records = 24, 0
        while written < limit:
            head = fh.read(16)
            if len(head) < 16:
                break
            caplen = struct.unpack(order + "IIII", head)[2]
            body = fh.read(caplen)
            if len(body) < caplen:
                break
            dst.write(head + body)
            written += 16 + caplen
            records += 1
    return records


def count(tree: Path, capture: Path, work: Path) -> int:
    """Instructions of one analysis of ``capture`` by the package in ``tree``."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY, "-c", RUN,
         "analyze", str(capture), "-o", str(out), "-q", "--workers", "1"],
        cwd=work,  # not the tree's parent: the package must come from PYTHONPATH
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind gave no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--mb", type=float, default=40.0)
    ap.add_argument("--baseline", help="a git revision counted in the same run")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        part, empty = work / "part.pcap", work / "empty.pcap"
        records = cut(args.capture, args.mb, part)
        cut(args.capture, 0, empty)
        trees = [("this tree", HERE.parent)]
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(
                ["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree),
                 args.baseline],
                check=True,
                capture_output=True,
            )  # fmt: skip
            trees.append((args.baseline, tree))
        try:
            print(f"{args.capture.name}: first {records:,} records ({args.mb:g} MB)")
            print("| package | start-up | whole run | the records | vs this tree |")
            print("|---|---|---|---|---|")
            first = 0
            for name, tree in trees:
                # compiled first, as an installation is (PYTHONDONTWRITEBYTECODE may be set)
                subprocess.run([PY, "-m", "compileall", "-q", str(tree / "analyzer")], check=True)
                start, whole = count(tree, empty, work), count(tree, part, work)
                first = first or whole - start
                print(
                    f"| {name} | {start / 1e6:,.0f} M | {whole / 1e6:,.0f} M | "
                    f"{(whole - start) / 1e6:,.0f} M | {(whole - start) / first:.3f} |"
                )
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(HERE.parent), "worktree", "remove", "--force",
                     str(work / "baseline")],
                    check=False,
                    capture_output=True,
                )  # fmt: skip


if __name__ == "__main__":
    main()
