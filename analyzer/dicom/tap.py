"""The dataset tap: every byte of every DIMSE dataset, in order, for a consumer that keeps them.

The parser itself keeps only a dataset's head. A tap (the ``export`` command's object writer)
is handed each dataset from its first byte to its end, with the losses in between:

    begin(direction, context_id, command, ts)   the command set is complete, its dataset starts
    data(direction, context_id, data)           the next bytes of that dataset
    lost(direction, context_id, length, ts)     ``length`` stream bytes lost (a TCP gap): the
                                                dataset goes on after an unknown number of its
                                                bytes, or not at all
    end(direction, context_id, message)         the message is complete (``message.truncated``
                                                says whether bytes were lost or cut); ``None``
                                                when the parser dropped it unfinished

Datasets are keyed by (direction, presentation context), as PDVs are (PS3.8 9.3.5.1).
"""

from __future__ import annotations

from typing import Protocol

from analyzer.dicom.dimse import Command
from analyzer.dicom.messages import Message


class DatasetTap(Protocol):
    def begin(self, direction: int, context_id: int, command: Command, ts: float) -> None: ...

    def data(self, direction: int, context_id: int, data: bytes) -> None: ...

    def lost(self, direction: int, context_id: int, length: int, ts: float) -> None: ...

    def end(self, direction: int, context_id: int, message: Message | None) -> None: ...
