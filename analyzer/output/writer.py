"""Table writers with bounded memory.

Rows are buffered up to ``chunk_rows``; each full chunk becomes a columnar frame, and the
frames go to a part file once they hold ``PART_BYTES``; at the end the parts are streamed into
one table file (Parquet via a lazy scan; a table that never filled a part is written at once,
with no part), CSV and JSON lines are appended chunk by chunk. Every file is created with
mode 0600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl
from polars.io.plugins import register_io_source

from analyzer.errors import OutputError
from analyzer.logs.records import Schema
from analyzer.output import zeek
from analyzer.output.formats import EXTENSIONS, FORMATS, LIVE_FORMATS

FORMULA = r"^'*[=+\-@\t\r]"
"""A cell a spreadsheet would run as a formula (OWASP CSV injection), after any quotes."""
GUARDED = r"^'+[=+\-@\t\r]"
"""A cell the guard prefixed (reading back removes one quote)."""


def csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would take for a formula get one leading ``'``; a cell
    that already began with quotes before such a character gets one more, so reading back
    (``report.load``) removes exactly one and every value is recovered as it was."""
    text = [n for n, t in frame.schema.items() if t == pl.String]
    return frame.with_columns(
        pl.when(pl.col(n).str.contains(FORMULA))
        .then(pl.lit("'") + pl.col(n))
        .otherwise(pl.col(n))
        .alias(n)
        for n in text
    )


def _private_open(path: Path, mode: str = "wb") -> IO[Any]:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


PART_BYTES = 2 << 20
"""Columnar bytes (polars' estimate) a Parquet table holds in memory before they go to a part
file: fewer, larger parts than one per chunk (the ``phi`` table of 1 GB of CT traffic: 9
parts, not 34), most tables of a run never need one, and all twelve tables at once hold at
most 24 MB more than their rows."""


class TableWriter:
    def __init__(
        self, name: str, schema: Schema, outdir: Path, fmt: str, chunk_rows: int = 4096
    ) -> None:
        if fmt not in FORMATS:
            raise OutputError(f"unknown format {fmt!r}")
        self.name = name
        self.schema = schema
        self.fmt = fmt
        self.chunk_rows = chunk_rows
        self.path = outdir / f"{name}.{EXTENSIONS[fmt]}"
        self.rows: list[tuple[Any, ...]] = []
        self.count = 0
        self._parts: list[Path] = []
        self._partdir: Path | None = None
        self._outdir = outdir
        self._started = False
        self.sensor: str | None = None
        """A value for the ``sensor`` column of every row (``--sensor`` runs)."""
        self._keep: dict[Path, pl.Expr] = {}
        """Parts read through a filter (``add_parquet``)."""
        self._whole_parts = False
        """Some parts are whole tables (``add_parquet``): merged by a streaming scan, which
        reads them row group by row group, instead of one whole part at a time."""
        self._pending: list[pl.DataFrame] = []
        """Parquet: chunks not in a part yet (``PART_BYTES``)."""
        self._pending_bytes = 0

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk_rows:
            self.flush()

    def add_parquet(self, path: Path, keep: pl.Expr | None = None) -> None:
        """Add the rows of a Parquet file of this table's schema (a worker's table), streamed:
        the file becomes one more part (Parquet output) or is appended batch by batch.
        ``keep``: only the rows it selects (the merge of spans leaves out the fragments of
        flows the span before followed); such a file is read in place, filtered, at close."""
        self.flush()
        self._spill()  # the rows before it, in order
        scan = pl.scan_parquet(path) if keep is None else pl.scan_parquet(path).filter(keep)
        rows = scan.select(pl.len()).collect().item()
        if rows == 0:
            return
        try:
            if self.fmt == "parquet":
                if keep is None:
                    part = self._next_part()
                    shutil.move(path, part)
                else:
                    part = path
                    self._keep[part] = keep
                self._parts.append(part)
                self._whole_parts = True
            else:
                for batch in scan.collect_batches(chunk_size=self.chunk_rows):
                    self._append(batch)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror}") from None
        self.count += rows

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Add rows that are already a frame of this table's schema (a merge of part tables)."""
        self.flush()
        if frame.height:
            self._write(frame)
            self.count += frame.height

    def _frame(self) -> pl.DataFrame:
        # column by column: twice as fast as polars' row orientation for tuples of Python values
        columns = zip(*self.rows, strict=True) if self.rows else ([] for _ in self.schema)
        frame = pl.DataFrame(
            dict(zip(self.schema, map(list, columns), strict=True)), schema=self.schema
        )
        if self.sensor is not None and "sensor" in self.schema:
            frame = frame.with_columns(pl.lit(self.sensor, pl.String()).alias("sensor"))
        return frame

    def _take(self) -> pl.DataFrame | None:
        """The buffered rows as a frame (counted and cleared), or None when there are none."""
        if not self.rows:
            return None
        frame = self._frame()
        self.count += len(self.rows)
        self.rows = []
        return frame

    def flush(self) -> None:
        frame = self._take()
        if frame is not None:
            self._write(frame)

    def _next_part(self) -> Path:
        if self._partdir is None:
            self._partdir = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self._outdir))
        return self._partdir / f"part-{len(self._parts):06d}.parquet"

    def _write(self, frame: pl.DataFrame) -> None:
        """A chunk kept for the next part (Parquet, merged at close) or rows appended (CSV,
        JSON lines)."""
        if self.fmt == "parquet":
            self._pending.append(frame)
            self._pending_bytes += int(frame.estimated_size())
            if self._pending_bytes >= PART_BYTES:
                self._spill()
            return
        try:
            self._append(frame)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror}") from None

    def _held(self) -> pl.DataFrame:
        """The chunks not in a part yet, as one frame (emptied)."""
        frames, self._pending, self._pending_bytes = self._pending, [], 0
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)

    def _spill(self) -> None:
        """The chunks not in a part yet become one part file."""
        if not self._pending:
            return
        frame = self._held()
        try:
            part = self._next_part()
            with _private_open(part) as fh:
                frame.write_parquet(fh, row_group_size=self.chunk_rows)
            self._parts.append(part)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror}") from None

    def _append(self, frame: pl.DataFrame) -> None:
        first = not self._started
        self._started = True
        with _private_open(self.path, "wb" if first else "ab") as fh:
            if self.fmt == "csv":
                lists = [n for n, t in self.schema.items() if isinstance(t, pl.List)]
                if lists:  # CSV has no lists: join them with ';'
                    frame = frame.with_columns(pl.col(n).list.join(";") for n in lists)
                frame = csv_safe(frame)
                frame.write_csv(fh, include_header=first)
            elif self.fmt == "zeek":
                text = (zeek.header(self.name, self.schema) if first else "") + zeek.rows(
                    frame, self.schema
                )
                fh.write(text.encode("utf-8"))
            elif self.fmt == "zeek-json":
                fh.write(zeek.json_rows(frame, self.schema).encode("utf-8"))
            else:
                frame.write_ndjson(fh)

    def _merge(self, parts: list[Path], target: Path) -> None:
        """Stream ``parts`` into ``target`` in order. The plan has one source that reads one part
        at a time, so memory does not grow with the number of parts (a scan per part does)."""

        def one_part_at_a_time(*_: Any) -> Iterator[pl.DataFrame]:
            for part in parts:
                yield pl.read_parquet(part)

        with _private_open(target):
            pass
        if self._whole_parts:  # a few large parts
            keep = self._keep
            scans = [
                pl.scan_parquet(p) if p not in keep else pl.scan_parquet(p).filter(keep[p])
                for p in parts
            ]
            (scans[0] if len(scans) == 1 else pl.concat(scans)).sink_parquet(
                str(target), row_group_size=self.chunk_rows, maintain_order=True
            )
            os.chmod(target, 0o600)
            return
        register_io_source(io_source=one_part_at_a_time, schema=self.schema).sink_parquet(
            str(target), row_group_size=self.chunk_rows, maintain_order=True
        )
        os.chmod(target, 0o600)

    def close(self) -> int:
        """Write the final table file and return its row count."""
        total = self.count + len(self.rows)
        try:
            if self.fmt == "parquet":
                self.flush()
                if not self._parts:
                    with _private_open(self.path) as fh:
                        self._held().write_parquet(fh, row_group_size=self.chunk_rows)
                else:
                    self._spill()
                    tmp = self.path.with_suffix(".parquet.tmp")
                    with _private_open(tmp):
                        pass
                    self._merge(self._parts, tmp)
                    os.replace(tmp, self.path)
            elif self.fmt == "zeek-json" and total == 0:
                pass  # as Zeek: a JSON log with no entry is no file (an empty one reads as TSV)
            else:
                if self.rows or not self._started:
                    self._append(self._frame())
                if self.fmt == "zeek":
                    with _private_open(self.path, "ab") as fh:
                        fh.write(zeek.footer().encode("utf-8"))
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write: {exc.strerror}") from None
        finally:
            self.rows = []
            self._pending, self._pending_bytes = [], 0
            self.count = total
            if self._partdir is not None:
                shutil.rmtree(self._partdir, ignore_errors=True)
        return total


def _encode(frame: pl.DataFrame, fh: IO[Any], fmt: str, name: str, schema: Schema) -> None:
    """``frame`` as one whole file of ``fmt`` (a Zeek log with its header and footer)."""
    if fmt == "zeek":
        text = zeek.header(name, schema) + zeek.rows(frame, schema) + zeek.footer()
        fh.write(text.encode("utf-8"))
    elif fmt == "zeek-json":
        fh.write(zeek.json_rows(frame, schema).encode("utf-8"))
    else:
        frame.write_parquet(fh)


def _write_durably(
    frame: pl.DataFrame,
    target: Path,
    fmt: str = "parquet",
    name: str = "",
    schema: Schema | None = None,
) -> None:
    """Write ``frame`` to a hidden file beside ``target``, then rename it over ``target`` once the
    data and the rename are on disk: readers see the old file or the new one, never half."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with _private_open(tmp) as fh:
            _encode(frame, fh, fmt, name, schema if schema is not None else dict(frame.schema))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write: {exc.strerror}") from None


class PartWriter(TableWriter):
    """Live mode: every flush is a finished, durable part file ``OUTDIR/<name>/part-N-TIME.parquet``
    (``.log``: a whole Zeek log, header and footer included, as Zeek rotates its logs), written
    under a hidden name, then renamed, never merged. A crash loses only the rows not flushed
    yet; readers glob ``part-*.parquet``. Numbering continues after existing parts."""

    def __init__(
        self,
        name: str,
        schema: Schema,
        outdir: Path,
        chunk_rows: int = 4096,
        tag: str = "",
        fmt: str = "parquet",
    ) -> None:
        """``tag`` ends each part's name (``-w1``: the parts of live worker 1)."""
        if fmt not in LIVE_FORMATS:
            raise OutputError(f"live writes {', '.join(LIVE_FORMATS)}, not {fmt}")
        super().__init__(name, schema, outdir, "parquet", chunk_rows)
        self.part_fmt = fmt
        self.ext = EXTENSIONS[fmt]
        self.tag = tag
        self.dir = outdir / name
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.dir}: cannot create: {exc.strerror}") from None
        seqs = [int(p.name.split("-")[1]) for p in self.dir.glob(f"part-*.{self.ext}")]
        self.seq = max(seqs, default=-1) + 1

    def flush(self) -> None:
        frame = self._take()
        if frame is None:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.dir / f"part-{self.seq:06d}-{stamp}{self.tag}.{self.ext}"
        _write_durably(frame, target, self.part_fmt, self.name, self.schema)
        self.seq += 1

    def close(self) -> int:
        self.flush()
        return self.count


class SnapshotWriter(TableWriter):
    """A table that is rewritten whole (the asset inventory in live mode): ``close()`` replaces
    ``OUTDIR/<name>.parquet`` atomically with the rows added since the last close. Rows become
    columnar frames every ``chunk_rows``, so a big snapshot never exists as Python rows."""

    def __init__(
        self, name: str, schema: Schema, outdir: Path, chunk_rows: int = 512, fmt: str = "parquet"
    ) -> None:
        super().__init__(name, schema, outdir, fmt, chunk_rows)
        self._frames: list[pl.DataFrame] = []

    def flush(self) -> None:
        frame = self._take()
        if frame is not None:
            self._frames.append(frame)

    def close(self) -> int:
        self.flush()
        frames, self._frames = self._frames, []
        frame = pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=self.schema)
        _write_durably(frame, self.path, self.fmt, self.name, self.schema)
        self.count = frame.height
        return frame.height
