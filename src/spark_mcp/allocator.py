"""How ``serve``'s process allocates memory: ``[server] tune_malloc`` (on by default).

Every result chunk that passes through the server (the gateway relays each one, up to 2.8 MB;
the MCP path fetches Arrow batches) is a fresh buffer of a megabyte or more. glibc's malloc
serves those from the system each time: it maps fresh zeroed pages and gives them back when
the buffer is freed (a mapping above its mmap threshold, or a trim of the heap's top), so
every chunk pays page faults and zeroing for each 4 kB of it. Keeping buffers of up to 32 MiB
in the heap, and the heap's freed top up to 256 MiB, lets the next chunk reuse the last one's
pages: the gateway's CPU per 1M-row read fell by about a quarter (``benchmarks/gateway.py``).
What the process keeps is bounded by its own peak, as the next chunks reuse it.

glibc only (``mallopt``); elsewhere, and when ``MALLOC_*`` environment variables already tune
it (an operator's choice wins), this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MIB = 1024**2
SETTINGS = ((_M_MMAP_THRESHOLD, 32 * _MIB), (_M_TRIM_THRESHOLD, 256 * _MIB), (_M_TOP_PAD, 16 * _MIB))


def tune_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """Apply ``SETTINGS`` to this process's glibc malloc; True when it did."""
    if any(key.startswith("MALLOC_") for key in environ):
        return False
    name = ctypes.util.find_library("c")
    if name is None or os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
