"""`python -m bench SCENARIO ...`: each scenario is a function `main(argv) -> int` of a module here."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "register": ("bench.register", "main"),
    "media": ("bench.media", "main"),
    "cps": ("bench.calls", "main_cps"),
    "concurrent": ("bench.calls", "main_concurrent"),
    "crm": ("bench.crm", "main"),
    "acd": ("bench.acd", "main"),
    "web": ("bench.web", "main"),
    "webrtc": ("bench.webrtc", "main"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m bench {{{','.join(SCENARIOS)}}} [options] --json OUT", file=sys.stderr)
        return 2
    module, function = SCENARIOS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:])


raise SystemExit(main(sys.argv[1:]))
