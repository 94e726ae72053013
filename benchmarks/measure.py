"""Run one command and print, as JSON, its wall time, the peak RSS of its largest process and
the peak of the sum over its process tree (sampled every 50 ms from /proc)."""

import json
import os
import resource
import subprocess
import sys
import threading
import time


def tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                ppid, kb = 0, 0
                for line in fh:
                    if line.startswith("PPid:"):
                        ppid = int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = kb
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
    while not stop.wait(0.05):
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
