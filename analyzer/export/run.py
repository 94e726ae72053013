"""``dicom-analyzer export``: the whole analysis, plus every C-STORE's object as a file.

Output directory (0700): the tables ``analyze`` writes, the ``exported`` manifest, and the
objects under ``objects/`` (0700, each file 0600).
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from analyzer.capture import CaptureReader
from analyzer.config import Config
from analyzer.errors import OutputError
from analyzer.export.context import ExportFilter, Totals
from analyzer.export.tap import ExportJob, export_taps
from analyzer.run.pipeline import RunSummary, run_analysis
from analyzer.run.progress import Progress

OBJECTS = "objects"


@dataclass(frozen=True, slots=True)
class ExportResult:
    summary: RunSummary
    totals: Totals
    directory: Path


def objects_dir(outdir: Path) -> Path:
    path = outdir / OBJECTS
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the objects directory: {exc.strerror}") from None
    return path


def totals_of(outdir: Path) -> Totals:
    """The objects written, from the manifest (one or many processes wrote it)."""
    import polars as pl

    from analyzer.report.load import load_table

    m = load_table(outdir, "exported")
    written = m.filter(pl.col("path").is_not_null())
    return Totals(
        written=written.filter(pl.col("complete")).height,
        partial=written.filter(~pl.col("complete")).height,
        skipped=m.height - written.height,
        bytes=int(written["file_bytes"].sum() or 0),
    )


def run_export(
    config: Config,
    inputs: list[str],
    readers: list[CaptureReader],
    outdir: Path,
    fmt: str,
    progress: Progress,
    select: ExportFilter,
    deidentify: bool,
    workers: int = 1,
) -> ExportResult:
    job = ExportJob(objects_dir(outdir), select, deidentify)
    if config.salt is None:  # one random salt for the tables and the pseudonyms, never written
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    if not deidentify:
        print(
            "dicom-analyzer: export writes the objects as they crossed the wire, patient data "
            f"included, into {job.directory} (owner only); --deidentify removes it",
            file=sys.stderr,
        )
    if workers > 1:
        from analyzer.run.workers import run_parallel

        summary = run_parallel(config, inputs, readers, outdir, fmt, progress, workers, export=job)
    else:
        hooks = export_taps(config, job, outdir, fmt)
        summary = run_analysis(
            config,
            readers,
            outdir,
            fmt,
            progress,
            taps=hooks.taps,
            extra_writers=hooks.writers,
            http_objects=hooks.http,
        )
    return ExportResult(summary, totals_of(outdir), job.directory)
