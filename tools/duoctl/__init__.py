"""Operator tooling behind `./build.sh check` and `./build.sh config` (docs/tooling.md).

Pure Python 3 + PyYAML; nothing here talks to the network. `check` runs the filters' own static
cross-checks and then Envoy's `--mode validate`; `config` writes a complete bootstrap from a short
values file."""
