"""IP addresses and CIDR blocks, as event-ruler recognises them.

An address is ``(bits, value)``: ``bits`` is 32 or 128. IPv4-mapped IPv6 addresses count as
IPv4, as Java's ``InetAddress`` reads them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from setpiece.errors import PatternError

__all__ = ["Address", "parse_cidr", "parse_ip"]

Address = tuple[int, int]

_OCTETS: Final = {str(number): number for number in range(256)}
_V6: Final = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_MASK: Final = re.compile(r"[+-]?[0-9]+")


def parse_ip(text: str) -> Address | None:
    """The address ``text`` spells, or None when it is not an IP address literal."""
    if "." in text:
        # IPv4 or nothing (an IPv6 literal has no dots): four decimal octets, 0 to 255, without
        # leading zeros (ambiguous: octal?), which are exactly the keys of _OCTETS.
        parts = text.split(".")
        if len(parts) != 4:
            return None
        a, b, c, d = parts
        get = _OCTETS.get
        first, second, third, fourth = get(a), get(b), get(c), get(d)
        if first is None or second is None or third is None or fourth is None:
            return None
        return 32, first << 24 | second << 16 | third << 8 | fourth
    if _V6.fullmatch(text):
        try:
            v6 = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        mapped = v6.ipv4_mapped
        if mapped is not None:
            return 32, int(mapped)
        return 128, int(v6)
    return None


def parse_cidr(text: str, path: str) -> tuple[int, int, int]:
    """``(bits, lowest, highest)`` of the block ``text``; PatternError naming ``path`` if bad."""
    parts = text.split("/")
    if len(parts) != 2:
        raise PatternError(f"{path}: cidr {text!r} is malformed, it needs exactly one '/'")
    address, mask_text = parts
    if not _MASK.fullmatch(mask_text):
        raise PatternError(f"{path}: cidr {text!r}: mask bits must be an integer")
    mask = int(mask_text)
    ip = parse_ip(address)
    if ip is None:
        raise PatternError(f"{path}: cidr {text!r}: {address!r} is not an IP address")
    bits, value = ip
    if mask < 0 or mask >= bits:
        family = 4 if bits == 32 else 6
        raise PatternError(
            f"{path}: cidr {text!r}: mask bits must be between 0 and {bits - 1} for IPv{family}"
        )
    host = (1 << (bits - mask)) - 1
    return bits, value & ~host, value | host
