"""The mode a new file should get: what ``open()`` would give it under the user's umask.

``tempfile.mkstemp`` creates files ``0o600`` whatever the umask, so a state file, run log
or agent-written source file created by "temp file + rename" would come out private to
the runtime's user while every file the user creates is group-readable (umask 022/002).
Atomic writers call ``new_file_mode()`` for a file that did not exist and keep an
existing file's own mode otherwise.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _LOCK:  # elsewhere: set and restore at once (umask has no read-only call)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """``0o666`` less the umask: the mode ``open(path, "w")`` would create a file with."""
    return 0o666 & ~current_umask()
