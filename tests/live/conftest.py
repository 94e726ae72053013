"""Fixtures shared by the live tests."""

from tests.live.test_live import peers

__all__ = ["peers"]
