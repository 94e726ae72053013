"""Run one command and print, as JSON, its wall time, the peak RSS of its largest process and
the peak of the sum over its process tree (sampled every 100 ms from /proc)."""

import json
import os
import resource
import subprocess
import sys
import threading
import time

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kb(root: int) -> int:
    """Sum of the resident sizes of ``root`` and its descendants, from /proc/PID/stat (one
    short read per process: the sampler must not take CPU from the command it measures)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * PAGE_KB
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
peak_sum = 0
stop = threading.Event()


def sample() -> None:
    global peak_sum
    while not stop.wait(0.1):
        peak_sum = max(peak_sum, tree_rss_kb(proc.pid))


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
_, err = proc.communicate()
seconds = time.perf_counter() - start
stop.set()
sampler.join()
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(
    json.dumps(
        {
            "seconds": seconds,
            "peak_rss_mb": peak_kb / 1024,
            "peak_rss_sum_mb": max(peak_sum, peak_kb) / 1024,
            "rc": proc.returncode,
            "stderr": (err or "")[-500:],
        }
    )
)
