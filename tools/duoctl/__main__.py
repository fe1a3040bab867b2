"""python -m duoctl {check|config} ... (what ./build.sh check / config run)."""

import sys
from pathlib import Path

from . import check, values


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "config", "router-config"):
        print("usage: python -m duoctl {check FILE... | config VALUES.yaml [-o FILE] | router-config FILE}",
              file=sys.stderr)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "router-config":
        # For ./build.sh explain: duo_router's JSON configuration out of an Envoy bootstrap.
        if len(rest) != 1:
            print("usage: python -m duoctl router-config FILE", file=sys.stderr)
            return 2
        text, error = check.router_configuration(Path(rest[0]))
        if error:
            print(f"{rest[0]}: {error}", file=sys.stderr)
            return 2
        sys.stdout.write(text or "")
        return 0
    return check.main(rest) if cmd == "check" else values.main(rest)


sys.exit(main())
