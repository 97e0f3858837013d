"""`make bench`: run every benchmark module and print the ratios each measured in one run.

Benchmarks report ratios against a bare baseline measured in the same run (these machines are
shared and noisy; a lone absolute time means little). Each module has a `main()` that starts its
own stack on free ports, so a benchmark never touches a stack left running by `make run`.
Run one with `python -m bench case`, `python -m bench media`, `python -m bench retention` or
`python -m bench compliance`, `python -m bench access` or `python -m bench audit`.
"""

from __future__ import annotations

import importlib
import sys

MODULES = {
    "datalayer": "bench.datalayer_bench",
    "case": "bench.case_bench",
    "media": "bench.media_bench",
    "retention": "bench.retention_bench",
    "compliance": "bench.compliance_bench",
    "access": "bench.access_bench",
    "audit": "bench.audit_bench",
}


def main() -> None:
    wanted = sys.argv[1:] or list(MODULES)
    unknown = [w for w in wanted if w not in MODULES]
    if unknown:
        sys.exit(f"unknown benchmark {unknown}; choose from {sorted(MODULES)}")
    for name in wanted:
        print(f"== benchmark: {name}", flush=True)
        importlib.import_module(MODULES[name]).main()


if __name__ == "__main__":
    main()
