#!/usr/bin/env python3
"""Render the production Envoy bootstrap from its template and a host list (stdlib only):

    python3 examples/production/render.py examples/production/hosts.env > envoy.yaml
    python3 examples/production/render.py hosts.env GITLAB_HOST=gitlab.corp.example > envoy.yaml

`hosts.env` holds KEY=VALUE lines (# comments allowed); KEY=VALUE arguments override it. Every
placeholder of the template must be given and every given key must be used, so a typo fails here
instead of producing a config that points at the wrong host."""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("envoy.yaml.tmpl")
VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]+$")  # host names, ports, paths: nothing YAML would reinterpret


def parse(lines: list[str], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"{source}:{n}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if not VALUE.match(value):
            raise SystemExit(f"{source}:{n}: {key} has an unsafe or empty value {value!r}")
        out[key.strip()] = value
    return out


def render(values: dict[str, str], template: str | None = None) -> str:
    text = template if template is not None else TEMPLATE.read_text()
    tmpl = string.Template(text)
    wanted = {m.group("named") or m.group("braced") for m in tmpl.pattern.finditer(text)} - {None}
    missing = sorted(wanted - values.keys())
    unknown = sorted(values.keys() - wanted)
    if missing or unknown:
        raise SystemExit(f"render: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    return tmpl.substitute(values)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    values = parse(Path(argv[0]).read_text().splitlines(), argv[0])
    values.update(parse(argv[1:], "arguments"))
    sys.stdout.write(render(values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
