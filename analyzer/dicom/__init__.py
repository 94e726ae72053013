"""Sans-IO DICOM upper layer (PS3.8) and DIMSE (PS3.7) decoding.

Nothing here reads sockets, files or clocks, and nothing imports network, capture or
output code: bytes and timestamps go in, frozen events come out.
"""
