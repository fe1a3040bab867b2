"""Validation of the shipped Kubernetes and Istio manifests against vendored schemas
(tests/schemas/, provenance and licenses in its README): Istio's CRD `openAPIV3Schema` of the
pinned Istio release, and Kubernetes' JSON schemas of the pinned Kubernetes release.

Validation is strict, as `kubectl apply --validate=strict` is: an object schema that lists its
properties refuses unknown fields (unless it says `x-kubernetes-preserve-unknown-fields`, as
Istio's EnvoyFilter patch values do), so a misspelt field fails instead of being pruned."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .envoy import ROOT

SCHEMAS = ROOT / "tests" / "schemas"
ISTIO_VERSION = "1.30.3"
KUBERNETES_VERSION = "1.33.0"


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=None)
def istio_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema of that CRD version."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((SCHEMAS / f"istio-{ISTIO_VERSION}").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
            props["kind"] = {"type": "string", "enum": [kind]}
            props["metadata"] = {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "namespace": {"type": "string"},
                "labels": {"type": "object"}, "annotations": {"type": "object"}}}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
            out[(f"{group}/{v['name']}", kind)] = _strict(schema)
    return out


@lru_cache(maxsize=None)
def _kubernetes_registry() -> Any:
    """The shared definitions, under the `$id` the kinds' `$ref`s resolve to."""
    from referencing import Registry, Resource

    defs = json.loads((SCHEMAS / f"kubernetes-{KUBERNETES_VERSION}" / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


def kubernetes_schema(api_version: str, kind: str) -> tuple[dict[str, Any], Any]:
    group, _, version = api_version.rpartition("/")
    name = f"{kind.lower()}-{group.split('.')[0] + '-' if group else ''}{version}.json"
    path = SCHEMAS / f"kubernetes-{KUBERNETES_VERSION}" / name
    if not path.exists():
        raise AssertionError(f"no vendored Kubernetes {KUBERNETES_VERSION} schema for {api_version} {kind} ({name})")
    return json.loads(path.read_text()), _kubernetes_registry()


def errors(doc: dict[str, Any]) -> list[str]:
    """Every schema error of one manifest (empty: valid)."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in istio_schemas():
        validator = jsonschema.Draft7Validator(istio_schemas()[key])
    else:
        schema, registry = kubernetes_schema(*key)
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
    where = f"{key[1]} {doc.get('metadata', {}).get('name')}"
    return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
