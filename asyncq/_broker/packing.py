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

# The str16 heads of strings shorter than this, made once: a task id (36 bytes) and a
# small message take theirs from here, with no bytes built per string.
_TABLE_SIZE = 1024
_HEADS = [_STR16 + size.to_bytes(2, "big") for size in range(_TABLE_SIZE)]


def _head(size: int) -> bytes:
    if size < 0x10000:
        return _STR16 + size.to_bytes(2, "big")
    return _STR32 + size.to_bytes(4, "big")


def pack_pairs(firsts: Sequence[bytes], seconds: Sequence[bytes]) -> bytes:
    """A MessagePack array ``[firsts[0], seconds[0], firsts[1], seconds[1], ...]`` of byte
    strings, for ``cmsgpack.unpack``."""
    heads, table_size = _HEADS, _TABLE_SIZE
    parts = [_ARRAY32 + (2 * len(firsts)).to_bytes(4, "big")]
    for first, second in zip(firsts, seconds, strict=True):
        size, other = len(first), len(second)
        parts += (
            heads[size] if size < table_size else _head(size),
            first,
            heads[other] if other < table_size else _head(other),
            second,
        )
    return b"".join(parts)
