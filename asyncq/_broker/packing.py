"""Many strings in one script argument, framed as a MessagePack array.

Sending a batch of N tasks as 2N separate arguments costs the client a per-argument
encoding pass in redis-py; one argument holding them all costs a single join. Redis's
Lua ships ``cmsgpack``, so a script unpacks the array in C with ``cmsgpack.unpack``.
Only the ``str`` family of MessagePack types is used (str16 and str32): the ``cmsgpack``
in Redis 6 and 7 reads them as binary-safe Lua strings, and does not know the ``bin``
types.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["pack_strings"]

_STR16, _STR32, _ARRAY32 = b"\xda", b"\xdb", b"\xdd"


def _frame(data: bytes) -> bytes:
    size = len(data)
    if size < 0x10000:
        return _STR16 + size.to_bytes(2, "big") + data
    return _STR32 + size.to_bytes(4, "big") + data


def pack_strings(items: Iterable[bytes], count: int) -> bytes:
    """A MessagePack array of ``count`` byte strings, in order, for ``cmsgpack.unpack``."""
    parts = [_ARRAY32 + count.to_bytes(4, "big")]
    parts.extend(map(_frame, items))
    if len(parts) != count + 1:
        raise ValueError(f"pack_strings: expected {count} items, got {len(parts) - 1}")
    return b"".join(parts)
