"""Where records go: one typed sink per table, gathered in a ``LogSet``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from analyzer.logs.records import (
    Asset,
    Conn,
    DicomAssoc,
    DicomContext,
    DicomObject,
    DicomWeb,
    Dimse,
    FindingRow,
    Http,
    Phi,
    Weird,
)

R_contra = TypeVar("R_contra", contravariant=True)


class RowSink(Protocol[R_contra]):
    """Anything that takes the records of one table (a table writer, a list in tests)."""

    def add(self, row: R_contra) -> None: ...


@dataclass(frozen=True, slots=True)
class LogSet:
    """The sinks of every table of a run, each typed by its record."""

    conn: RowSink[Conn]
    dicom_assoc: RowSink[DicomAssoc]
    dicom_context: RowSink[DicomContext]
    dimse: RowSink[Dimse]
    dicom_object: RowSink[DicomObject]
    phi: RowSink[Phi]
    finding: RowSink[FindingRow]
    asset: RowSink[Asset]
    weird: RowSink[Weird]
    http: RowSink[Http]
    dicomweb: RowSink[DicomWeb]

    @classmethod
    def of(cls, sinks: Mapping[str, RowSink[Any]]) -> LogSet:
        """From a name -> sink mapping that holds every table of ``records.RECORDS``."""
        return cls(**{name: sinks[name] for name in cls.__slots__})


class ListSink(list[object]):
    """A sink that keeps its records in memory (tests, tools)."""

    def add(self, row: object) -> None:
        self.append(row)
