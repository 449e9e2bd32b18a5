"""Frames between the gateway and its instances: 4-byte big-endian length + pickle.

Why pickle: both ends are batchwise processes started by the same user on the same
machine (a Unix socket in a private folder), and records and outputs are numpy
arrays and strings that pickle moves without copies through JSON. Nothing from the
network is ever unpickled: the gateway decodes HTTP bodies itself.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30
"""A frame over 1 GiB means a broken peer, not a batch."""


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def _length(header: bytes) -> int:
    (n,) = HEADER.unpack(header)
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes is over the limit")
    return n


def recv_sync(sock: socket.socket) -> Any | None:
    """One message, or None when the peer closed the connection."""
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    body = _recv_exact(sock, _length(header))
    if body is None:
        return None
    return pickle.loads(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def recv_async(reader: asyncio.StreamReader) -> Any | None:
    """One message, or None when the peer closed the connection (or died)."""
    try:
        header = await reader.readexactly(HEADER.size)
        body = await reader.readexactly(_length(header))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return pickle.loads(body)
