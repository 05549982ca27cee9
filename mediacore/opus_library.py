"""Finding and loading the libopus that `native.opus` calls.

PyAV's manylinux wheel (a dependency of aiortc, so always installed) carries its own libopus next
to the package, in `<site-packages>/av.libs/libopus-<hash>.so.<version>`; that copy is preferred
because it is known to be there. A system libopus (`libopus.so.0` from Debian's libopus0) is the
fallback. Loading is once per process; native code then calls libopus without the GIL.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
from pathlib import Path

from mediacore.errors import MediaError
from native import opus as _native


def _bundled_with_pyav() -> list[Path]:
    spec = importlib.util.find_spec("av")
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[Path] = []
    for location in spec.submodule_search_locations:
        # auditwheel puts a wheel's private libraries in "<package>.libs" beside the package.
        libs = Path(location).parent / "av.libs"
        found.extend(sorted(libs.glob("libopus-*.so*")))
    return found


def find_libopus() -> str:
    """Path (or soname) of a libopus to load; MediaError when there is none."""
    bundled = _bundled_with_pyav()
    if bundled:
        return str(bundled[0])
    system = ctypes.util.find_library("opus")
    if system:
        return system
    raise MediaError(
        "no libopus found: neither PyAV's wheel (av.libs/libopus-*.so*) nor a system libopus "
        "(Debian: apt-get install libopus0)"
    )


def load_libopus(path: str | None = None) -> str:
    """Load libopus (from `path`, else from `find_libopus()`) if not yet loaded; its version."""
    if _native.is_loaded():
        return _native.version()
    target = path if path is not None else find_libopus()
    try:
        return _native.load_library(target)
    except OSError as error:
        raise MediaError(str(error)) from error
