"""The pure-Python floor: pcap records, Ethernet, IPv4 and TCP headers with ``struct``, and a
flow dict counting payload bytes per 4-tuple. Nothing else: what any Python analyzer pays."""

import struct
import sys

REC = struct.Struct("<IIII")
IP = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBH")

flows: dict[tuple[bytes, int, bytes, int], int] = {}
packets = 0
with open(sys.argv[1], "rb") as fh:
    fh.read(24)
    buf = b""
    pos = 0
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            break
        buf = buf[pos:] + chunk
        pos = 0
        end = len(buf)
        while pos + 16 <= end:
            _sec, _usec, caplen, _wire = REC.unpack_from(buf, pos)
            if pos + 16 + caplen > end:
                break
            o = pos + 16
            pos += 16 + caplen
            packets += 1
            if buf[o + 12 : o + 14] != b"\x08\x00":
                continue
            vihl, _tos, total, _id, _frag, _ttl, proto, _sum, src, dst = IP.unpack_from(buf, o + 14)
            if proto != 6:
                continue
            t = o + 14 + ((vihl & 15) << 2)
            sport, dport, _seq, _ack, off, _flags, _win = TCP.unpack_from(buf, t)
            key = (src, sport, dst, dport)
            flows[key] = flows.get(key, 0) + total - ((vihl & 15) << 2) - ((off >> 4) << 2)
print(packets)
