"""Many strings in one script argument, framed as a MessagePack array.

Sending a batch of N tasks as 2N separate arguments costs the client a per-argument
encoding pass in redis-py; one argument holding them all costs a single join. Redis's
Lua ships ``cmsgpack``, so a script unpacks the array in C with ``cmsgpack.unpack``.
Only the ``str`` family of MessagePack types is used (str16 and str32): the ``cmsgpack``
in Redis 6 and 7 reads them as binary-safe Lua strings, and does not know the ``bin``
types.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pack_pairs"]

_STR16, _STR32, _ARRAY32 = b"\xda", b"\xdb", b"\xdd"


def _frame(data: bytes) -> bytes:
    size = len(data)
    if size < 0x10000:
        return _STR16 + size.to_bytes(2, "big") + data
    return _STR32 + size.to_bytes(4, "big") + data


def pack_pairs(firsts: Sequence[bytes], seconds: Sequence[bytes]) -> bytes:
    """A MessagePack array ``[firsts[0], seconds[0], firsts[1], seconds[1], ...]`` of byte
    strings, for ``cmsgpack.unpack``."""
    parts = [_ARRAY32 + (2 * len(firsts)).to_bytes(4, "big")]
    append = parts.append
    for first, second in zip(firsts, seconds, strict=True):
        append(_frame(first))
        append(_frame(second))
    return b"".join(parts)
