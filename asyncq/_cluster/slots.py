"""Redis Cluster slot arithmetic: which of the 16384 slots a key or a queue lives in.

Pure code, no I/O: the router and the tests use it to know which node owns a queue
without asking Redis.
"""

from __future__ import annotations

__all__ = ["SLOT_COUNT", "key_slot", "queue_slot"]

SLOT_COUNT = 16384


def _crc16_table() -> list[int]:
    # CRC-16/XMODEM (polynomial 0x1021), the checksum Redis Cluster uses for slots.
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``, honouring a ``{hash tag}`` as Redis does."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        # An empty tag "{}" does not count: the whole key is hashed.
        if end != -1 and end != start + 1:
            raw = raw[start + 1 : end]
    return _crc16(raw) % SLOT_COUNT


def queue_slot(queue: str) -> int:
    """The slot holding every key of ``queue`` (the slot of the tag ``{queue}``)."""
    return key_slot(f"{{{queue}}}")
