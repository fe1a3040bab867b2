"""python -m duoctl {check|config} ... (what ./build.sh check / config run)."""

import sys

from . import check, values


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "config"):
        print("usage: python -m duoctl {check FILE... | config VALUES.yaml [-o FILE]}", file=sys.stderr)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    return check.main(rest) if cmd == "check" else values.main(rest)


sys.exit(main())
