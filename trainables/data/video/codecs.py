"""Import decord and PyAV so that each uses its own FFmpeg, whichever comes first.

Why this module: both wheels bundle a private FFmpeg and libx264 (different builds), and
decord loads its native library with ``RTLD_GLOBAL``. That puts decord's FFmpeg symbols in
the process-wide lookup scope, so once decord is imported, PyAV's libraries resolve every
symbol they have not called yet to decord's copies. The same synthetic video then encodes to
different bytes depending on whether anything imported decord first (the cause of the
byte-determinism and "still outside the box" test flakes that only showed in full-suite
runs), and one encoder runs half on one build, half on the other.

Loading ``libdecord.so`` with ``RTLD_LOCAL`` keeps its FFmpeg private; decord's Python side
reaches the library through its own ctypes handle, so nothing else needs the global scope.
This holds only when decord is first imported through ``import_decord``: code that imports
decord directly before it gets decord's default. Everything in the project goes through here.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

DECORD_LIBRARY = "libdecord.so"
_import_lock = threading.Lock()


def _local_cdll(real: type[ctypes.CDLL]) -> Any:
    """``ctypes.CDLL`` that loads decord's own library with RTLD_LOCAL, anything else as asked."""

    def cdll(name: Any, mode: int = ctypes.DEFAULT_MODE, *args: Any, **kwargs: Any) -> Any:
        if name is not None and Path(str(name)).name == DECORD_LIBRARY:
            mode = ctypes.RTLD_LOCAL
        return real(name, mode, *args, **kwargs)

    return cdll


def import_decord() -> ModuleType:
    """The decord module, its native library (and so its FFmpeg) loaded privately.

    Raises ImportError when decord is not installed, like ``import decord``.
    """
    # Under the lock, so a thread never gets the half-imported module another thread is
    # still loading (decoding runs in a thread pool).
    with _import_lock:
        if sys.modules.get("decord") is None:   # absent, or None: "import blocked", let it say so
            real = ctypes.CDLL
            ctypes.CDLL = _local_cdll(real)  # type: ignore[misc]
            try:
                import decord
            finally:
                ctypes.CDLL = real  # type: ignore[misc]
        import decord
    return decord


def import_av() -> ModuleType:
    """The PyAV module; ImportError names the package to install."""
    try:
        import av
    except ImportError as err:
        raise ImportError("writing synthetic videos needs PyAV: pip install av") from err
    return av
