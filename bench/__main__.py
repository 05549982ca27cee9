"""`python -m bench SCENARIO ...`: each scenario is a module of this package with `main(argv)`."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "register": "bench.register",
    "media": "bench.media",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m bench {{{','.join(SCENARIOS)}}} [options] --json OUT", file=sys.stderr)
        return 2
    module = importlib.import_module(SCENARIOS[argv[0]])
    return module.main(argv[1:])


raise SystemExit(main(sys.argv[1:]))
