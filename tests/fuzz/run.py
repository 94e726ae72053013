"""Coverage-guided fuzzing with atheris (libFuzzer in process).

    python -m tests.fuzz.run TARGET [--runs N] [--seconds S] [--workdir DIR]
    python -m tests.fuzz.run all --runs 1000000        # the long run: every target

TARGET is ``dicom``, ``http``, ``capture``, ``pipeline`` or ``all``. The analyzer is instrumented for
edge coverage; the corpus starts from real bytes (``seeds.py``). A crash is any exception a
target lets out: libFuzzer stops, writes the input as ``crash-*`` in the work directory and the
run exits non-zero. At the end one line per target: executions, edges covered, features,
corpus size, crashes, seconds and peak RSS, as printed in the README.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("dicom", "http", "capture", "pipeline")
MAX_LEN = {"dicom": 8192, "http": 16384, "capture": 16384, "pipeline": 16384}


def _child(target: str, args: list[str], corpus: Path) -> None:
    """Inside the fuzzing process: instrument, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["analyzer"]):
        from tests.fuzz import targets
    one = targets.TARGETS[target]
    atheris.Setup([sys.argv[0], *args, str(corpus)], one)
    atheris.Fuzz()


def run_target(target: str, runs: int, seconds: int, workdir: Path) -> dict[str, object]:
    from tests.fuzz.seeds import SEEDS

    corpus = workdir / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(SEEDS[target]()):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    args = [
        f"-runs={runs}",
        f"-max_len={MAX_LEN[target]}",
        "-print_final_stats=1",
        f"-artifact_prefix={workdir}/{target}-",
        "-rss_limit_mb=2048",
    ]
    if seconds:
        args.append(f"-max_total_time={seconds}")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--child", target, "--corpus", str(corpus), *args],
        capture_output=True,
        text=True,
    )
    log = proc.stderr
    # atheris prints an uncaught exception's traceback on stdout
    (workdir / f"{target}.log").write_text(log + "\n--- stdout ---\n" + proc.stdout)
    done = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+) ft: (\d+) corp: (\d+)", log)
    last = done[-1] if done else ("0", "0", "0", "0")
    executed = re.search(r"stat::number_of_executed_units:\s+(\d+)", log)
    rss = re.search(r"stat::peak_rss_mb:\s+(\d+)", log)
    crashes = sorted(p.name for p in workdir.glob(f"{target}-crash-*"))
    return {
        "target": target,
        "executions": int(executed.group(1)) if executed else int(last[0]),
        "edges": int(last[1]),
        "features": int(last[2]),
        "corpus": int(last[3]),
        "crashes": len(crashes) + (1 if proc.returncode and not crashes else 0),
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": int(rss.group(1)) if rss else None,
        "exit": proc.returncode,
        "artifacts": crashes,
    }


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        target, corpus = sys.argv[2], Path(sys.argv[4])
        _child(target, sys.argv[5:], corpus)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=[*NAMES, "all"])
    ap.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    ap.add_argument("--seconds", type=int, default=0, help="stop a target after S seconds")
    ap.add_argument("--workdir", type=Path, help="corpus, logs and crashes (default: a temp dir)")
    a = ap.parse_args()
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="dicom-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    failed = False
    print(f"work directory: {workdir}")
    print("target    executions  edges  features  corpus  crashes  seconds  peak RSS MB")
    for target in NAMES if a.target == "all" else (a.target,):
        r = run_target(target, a.runs, a.seconds, workdir)
        print(
            f"{r['target']:<9} {r['executions']:>10,} {r['edges']:>6,} {r['features']:>9,} "
            f"{r['corpus']:>7,} {r['crashes']:>8} {r['seconds']:>8} {r['peak_rss_mb']!s:>12}"
        )
        if r["crashes"]:
            failed = True
            print(f"  crash: see {workdir}/{target}.log {r['artifacts']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
