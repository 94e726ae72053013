"""What the DICOM decoder's state costs, for the memory budget (``analyzer/memory.py``):
measured with ``tracemalloc`` on this code and rounded up. Kept here so that the decoder
imports nothing outside its package."""

DICOM_FLOW = 4_300
"""The DICOM decoder of a flow: parser, framers, association view and outcome (measured about
4,100 above the TCP flow)."""
CONTEXT = 480
"""One presentation context: its proposal, its state and its answer (measured 460)."""
PENDING_MESSAGE = 300
"""One message being reassembled, besides its command and dataset head bytes."""
