"""Kubernetes manifests (examples/kubernetes, docs/deployment.md "Kubernetes"): rendered with the
filter images' digests, every document validates strictly against the vendored Kubernetes 1.33
API schemas; the Deployment mounts exactly the modules the production configuration loads."""

from __future__ import annotations

import importlib.util
import sys

from duo_e2e import schemas


def test_kubernetes_manifests_validate_and_pin_the_modules(e2e):
    spec = importlib.util.spec_from_file_location("duo_oci", e2e.root / "examples" / "istio" / "oci.py")
    oci = importlib.util.module_from_spec(spec)
    sys.modules["duo_oci"] = oci
    spec.loader.exec_module(oci)
    images = oci.build(e2e.root / "dist", e2e.run_dir / "k8s-oci", "0.0.0-e2e")
    rendered = oci.render_istio(images, "registry.e2e.test/duo", "0.0.0-e2e", e2e.run_dir / "kubernetes", oci.KUBERNETES)
    docs = [d for p in rendered for d in schemas.load_all(p)]
    kinds = [d["kind"] for d in docs]
    assert {"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds), kinds
    for doc in docs:
        problems = schemas.errors(doc)
        assert not problems, "\n".join(problems)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    refs = {v["name"]: v["image"]["reference"] for v in pod["volumes"] if "image" in v}
    for image in images:
        assert refs[image.name.replace("_", "-")] == f"registry.e2e.test/duo/{image.name}@{image.digest}", refs
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    template = (e2e.root / "examples" / "production" / "envoy.yaml.tmpl").read_text()
    for name in ("duo_logger", "duo_auth", "duo_router"):
        assert f"/etc/envoy/wasm/{name}.wasm" in mounts, mounts
        assert "${WASM_DIR}/" + f"{name}.wasm" in template
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "duo-gateway"  # what the Istio manifests select
    # The check can fail: a misspelt field and a wrong type are refused.
    bad = dict(deployment, spec=dict(deployment["spec"], replica=2, minReadySeconds="x"))
    assert len(schemas.errors(bad)) == 2, schemas.errors(bad)
