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
from analyzer.export.deidentify import Deidentify
from analyzer.export.tap import Exporter, ExportFilter, Totals
from analyzer.logs.records import EXPORT_TABLES
from analyzer.output.writer import TableWriter
from analyzer.privacy import Hasher, PhiPolicy
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


def run_export(
    config: Config,
    readers: list[CaptureReader],
    outdir: Path,
    fmt: str,
    progress: Progress,
    select: ExportFilter,
    deidentify: bool,
) -> ExportResult:
    directory = objects_dir(outdir)
    if config.salt is None:  # one random salt for the tables and the pseudonyms, never written
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    manifest = TableWriter("exported", EXPORT_TABLES["exported"], outdir, fmt)
    # the run's hasher: the same salt names patients in the tables and in pseudonyms
    hasher = Hasher(config.salt)
    phi = PhiPolicy(hasher, False, config.capture_phi)
    exporter = Exporter(
        directory,
        manifest,
        phi,
        select,
        Deidentify(hasher) if deidentify else None,
    )
    if not deidentify:
        print(
            "dicom-analyzer: export writes the objects as they crossed the wire, patient data "
            f"included, into {directory} (owner only); --deidentify removes it",
            file=sys.stderr,
        )
    summary = run_analysis(
        config,
        readers,
        outdir,
        fmt,
        progress,
        taps=exporter.tap,
        extra_writers={"exported": manifest},
    )
    return ExportResult(summary, exporter.totals, directory)
