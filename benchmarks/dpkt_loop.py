"""The floor: read every record with dpkt and parse Ethernet/IP/TCP objects, nothing else."""

import sys

import dpkt

n = 0
with open(sys.argv[1], "rb") as fh:
    for _ts, buf in dpkt.pcap.Reader(fh):
        eth = dpkt.ethernet.Ethernet(buf)
        if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP):
            n += 1
print(n)
