"""From a captured frame to its TCP segment: link layers, IPv4, IPv6.

Link types (https://www.tcpdump.org/linktypes.html): Ethernet (1, with 802.1Q/802.1ad
tags), BSD loopback/null (0, family in the writer's byte order; 108 big-endian), raw IP
(101, and 12/14 as some systems wrote DLT_RAW; 228 IPv4, 229 IPv6), Linux cooked
capture SLL (113, 16-byte header) and SLL2 (276, 20-byte header; what ``tcpdump -i any``
writes).  IP fragments are not reassembled (a migration's TCP segments are not
fragmented); a fragment's bytes show up as a gap in its connection.
"""

from __future__ import annotations

import struct

ETHERNET, NULL, LOOP, RAW, LINUX_SLL, LINUX_SLL2, IPV4, IPV6 = 1, 0, 108, 101, 113, 276, 228, 229
LINKTYPE_NAMES = {
    ETHERNET: "Ethernet",
    NULL: "BSD loopback",
    LOOP: "OpenBSD loopback",
    RAW: "raw IP",
    12: "raw IP",
    14: "raw IP",
    LINUX_SLL: "Linux cooked (SLL)",
    LINUX_SLL2: "Linux cooked (SLL2)",
    IPV4: "raw IPv4",
    IPV6: "raw IPv6",
}
SUPPORTED = frozenset(LINKTYPE_NAMES)
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
#: Address families of the null/loopback header: AF_INET 2; AF_INET6 is 10 (Linux),
#: 24 (NetBSD, OpenBSD), 28 (FreeBSD), 30 (macOS).
_AF_INET6 = (10, 24, 28, 30)
_TCP = 6
_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_IPV4 = struct.Struct(">BxHxxHxB2x4s4s").unpack_from  # ver/ihl, total length, flags/frag, proto, src, dst
_IPV6 = struct.Struct(">4xHBx16s16s").unpack_from  # payload length, next header, src, dst
TCP_HEADER = struct.Struct(">HHI4xBB")  # ports, seq, data offset, flags


def ip_start(link: int, data, off: int, caplen: int) -> int:
    """Where the IP header starts in a frame, or -1 (not IP, or a link type we skip)."""
    if link == ETHERNET:
        pos = off + 12
        end = off + caplen
        while pos + 2 <= end:
            etype = _U16(data, pos)[0]
            if etype in (_ETH_IPV4, _ETH_IPV6):
                return pos + 2
            if etype not in _VLAN_TAGS:
                return -1
            pos += 4
        return -1
    if link in (RAW, 12, 14, IPV4, IPV6):
        return off
    if link == LINUX_SLL:
        return off + 16 if caplen >= 16 and _U16(data, off + 14)[0] in (_ETH_IPV4, _ETH_IPV6) else -1
    if link == LINUX_SLL2:
        return off + 20 if caplen >= 20 and _U16(data, off)[0] in (_ETH_IPV4, _ETH_IPV6) else -1
    if link in (NULL, LOOP):
        if caplen < 4:
            return -1
        family = _U32(data, off)[0] if link == LOOP else _U32LE(data, off)[0]
        if link == NULL and family not in (2, *_AF_INET6):
            family = _U32(data, off)[0]  # written on a big-endian host
        return off + 4 if family == 2 or family in _AF_INET6 else -1
    return -1


def tcp_segment(data, ip: int, end: int) -> tuple[bytes, bytes, int, int] | None:
    """(source address, destination address, TCP header offset, IP payload end) of the
    TCP segment in the IP packet at ``ip`` (``end``: end of the captured frame), or None
    for anything else (other protocols, fragments, damaged headers)."""
    if ip + 20 > end:
        return None
    version = data[ip] >> 4
    if version == 4:
        verihl, total, frag, proto, src, dst = _IPV4(data, ip)
        ihl = (verihl & 15) * 4
        if proto != _TCP or ihl < 20 or frag & 0x3FFF:  # not TCP, bad header, or a fragment
            return None
        # A total length of 0 is what TSO-offloaded packets show on the sending host.
        ip_end = ip + total if total else end
        if total and total < ihl:
            return None
        return src, dst, ip + ihl, ip_end
    if version == 6:
        if ip + 40 > end:
            return None
        plen, nxt, src, dst = _IPV6(data, ip)
        pos = ip + 40
        ip_end = pos + plen if plen else end  # 0: a jumbogram
        while nxt in _IPV6_EXTENSIONS:
            if pos + 8 > end:
                return None
            nxt, hlen = data[pos], (data[pos + 1] + 1) * 8
            pos += hlen
        if nxt != _TCP:  # including _IPV6_FRAGMENT
            return None
        return src, dst, pos, ip_end
    return None
