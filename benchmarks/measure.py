"""Run one command and print its wall time and peak RSS as JSON (a fresh process per run)."""

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(
    json.dumps(
        {
            "seconds": seconds,
            "peak_rss_mb": peak_kb / 1024,
            "rc": done.returncode,
            "stderr": done.stderr[-500:],
        }
    )
)
