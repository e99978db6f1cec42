"""Import FastJet without its start-up banner on stdout.

FastJet's C++ library prints a banner the first time a ClusterSequence runs, straight to
file descriptor 1, which would land in the middle of a command's output (or of a table a
user pipes into a file).  Printing it once with fd 1 pointed at /dev/null sets the
library's "already printed" flag, shared by the classic and the awkward interfaces.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

__all__ = ["import_fastjet"]

_silenced = False


def import_fastjet() -> ModuleType:
    """``import fastjet`` with the banner already consumed (once per process)."""
    global _silenced
    import fastjet

    if not _silenced:
        _silenced = True
        try:
            from fastjet import _swig
        except ImportError:  # another build: nothing to silence
            return fastjet
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            _swig.ClusterSequence.print_banner()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
    return fastjet
