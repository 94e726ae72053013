"""Capture sources: pcap, pcapng, gzip, stdin, and many files merged in time order."""

from analyzer.capture.sources import (
    CaptureReader,
    Record,
    Skip,
    WeirdSink,
    merged_records,
    open_inputs,
)

__all__ = ["CaptureReader", "Record", "Skip", "WeirdSink", "merged_records", "open_inputs"]
