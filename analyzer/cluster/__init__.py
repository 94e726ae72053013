"""``analyze --dask``: the analysis as tasks on a Dask distributed cluster (the ``cluster`` extra).

plan.py    inputs -> sensors -> runs of time-contiguous files -> tasks (run x flow shard)
task.py    one task on a worker: the per-flow stage into an attempt-private directory,
           renamed into place when complete (a retried task leaves no duplicate)
reduce.py  the fragments of flows that crossed a run boundary dropped, the cross-flow stage
           over every task's summary records, the final tables
run.py     the client: the cluster, submission, progress, errors, the summary
"""
