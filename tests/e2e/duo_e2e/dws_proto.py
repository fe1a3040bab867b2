"""Python stubs for the Duo Workflow Service contract (proto/contract.proto), generated at test
time with grpc_tools.protoc into a temporary directory (generated code is never committed) and
imported from there. `load()` generates once per process."""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("proto") / "contract.proto"

_lock = threading.Lock()
_mods: tuple[ModuleType, ModuleType] | None = None


def load() -> tuple[ModuleType, ModuleType]:
    """(contract_pb2, contract_pb2_grpc)."""
    global _mods
    with _lock:
        if _mods is None:
            from grpc_tools import protoc  # imported late: only gRPC scenarios need it

            out = Path(tempfile.mkdtemp(prefix="duo-dws-stubs-"))
            atexit.register(shutil.rmtree, out, True)
            well_known = resources.files("grpc_tools") / "_proto"
            rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{well_known}",
                              f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO)])
            if rc != 0:
                raise RuntimeError(f"protoc failed ({rc}) on {PROTO}")
            sys.path.insert(0, str(out))
            try:
                _mods = (importlib.import_module("contract_pb2"), importlib.import_module("contract_pb2_grpc"))
            finally:
                sys.path.remove(str(out))
        return _mods
