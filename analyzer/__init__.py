"""Passive network traffic analyzer for DICOM."""

__version__ = "0.1.0"
