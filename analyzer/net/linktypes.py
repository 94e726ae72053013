"""Link-layer types we decode (tcpdump.org/linktypes.html) and the ethertypes we follow."""

from __future__ import annotations

from enum import IntEnum


class LinkType(IntEnum):
    NULL = 0  # BSD loopback, AF value in the capturing host's byte order
    EN10MB = 1  # Ethernet
    RAW_OPENBSD = 12  # DLT_RAW on some BSDs
    RAW_BSDI = 14
    RAW = 101  # raw IPv4/IPv6
    LOOP = 108  # OpenBSD loopback, AF value in network byte order
    LINUX_SLL = 113  # tcpdump -i any (libpcap < 1.10 or -y LINUX_SLL)
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276  # tcpdump -i any (libpcap >= 1.10)


ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
"""802.1Q, 802.1ad (QinQ outer tag) and the pre-standard QinQ tag."""

AF_INET6_VALUES = frozenset({10, 24, 28, 30})
"""AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD and macOS; AF_INET is 2 everywhere."""

RAW_LINKTYPES = frozenset({LinkType.RAW, LinkType.RAW_OPENBSD, LinkType.RAW_BSDI})
