#!/usr/bin/env python3
"""Layer 3 of ./build.sh test: real Envoy 1.40 end to end (docs/e2e.md).

    .venv/bin/python tests/e2e/run.py            # every scenario
    .venv/bin/python tests/e2e/run.py -k health  # those whose name contains 'health'
    .venv/bin/python tests/e2e/run.py --list

Ends with the line `N passed, M failed` (`, K skipped` when some were skipped) and exits
non-zero when any scenario failed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from duo_e2e.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
