"""Hand freed memory back to the system between the stages of a long run.

glibc keeps the pages of freed Python and Arrow buffers for reuse; after a window (pack) or an
input file (convert) they are trimmed, so the resident size stays at what one window or file needs
instead of creeping up with every input.
"""

from __future__ import annotations

import ctypes


def release_freed_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
