"""A Dask worker preload: ``dask worker tcp://A:8786 --preload analyzer.cluster.preload``.

Sets, before polars is loaded in the worker, what the CLI sets for itself (``analyzer/cli.py``):
one polars thread (the work is single-threaded Python; more threads only raise the memory of
Parquet merges) and jemalloc handing freed pages back at once. Local clusters (``--dask local:N``)
inherit both from the client.
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
