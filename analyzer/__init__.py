"""Passive network traffic analyzer for DICOM."""

import os

__version__ = "0.1.0"

if os.environ.get("DICOM_ANALYZER_LEAN") == "1":  # a worker process (``analyzer/lean.py``)
    from analyzer.lean import leave_out

    leave_out()
