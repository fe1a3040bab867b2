"""Istio packaging (examples/istio, docs/istio.md): the OCI images Istio pulls, the manifests
validated against the vendored CRD schemas of the pinned Istio release, and the filter chain as
Istio delivers it (ECDS extension configs, modules resolved by image digest) in real Envoy."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import sys
import tarfile

from duo_e2e import schemas

FILTERS = ("duo_logger", "duo_auth", "duo_router")


def _oci(e2e):
    spec = importlib.util.spec_from_file_location("duo_oci", e2e.root / "examples" / "istio" / "oci.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["duo_oci"] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def _images(e2e):
    """The three images built from dist/*.wasm into the run directory (once per run)."""
    if not hasattr(e2e, "_istio_images"):
        oci = _oci(e2e)
        out = e2e.run_dir / "oci"
        images = oci.build(e2e.root / "dist", out, "0.0.0-e2e")
        manifests = oci.render_istio(images, "registry.e2e.test/duo", "0.0.0-e2e", e2e.run_dir / "istio")
        e2e._istio_images = (oci, images, manifests)
    return e2e._istio_images


def test_istio_oci_images_are_what_istios_fetcher_reads(e2e):
    """Each image: an OCI layout whose manifest's last layer is `application/vnd.oci.image.layer.v1.tar+gzip`,
    a gzip tar holding `plugin.wasm` byte-identical to dist/<filter>.wasm; the digest printed is
    the sha256 of the manifest blob; the same module gives the same digest; a damaged blob is refused."""
    oci, images, _ = _images(e2e)
    for image in images:
        index = json.loads((image.layout / "index.json").read_text())
        desc = index["manifests"][0]
        assert desc["digest"] == image.digest
        manifest_blob = (image.layout / "blobs" / "sha256" / image.digest.split(":")[1]).read_bytes()
        assert hashlib.sha256(manifest_blob).hexdigest() == image.digest.split(":")[1]
        manifest = json.loads(manifest_blob)
        last = manifest["layers"][-1]
        assert last["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip", last
        layer = (image.layout / "blobs" / "sha256" / last["digest"].split(":")[1]).read_bytes()
        assert layer[:2] == b"\x1f\x8b", "the layer is not gzip"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            names = tar.getnames()
            assert names == ["plugin.wasm"], names
            module = tar.extractfile("plugin.wasm").read()
        assert module == (e2e.root / "dist" / f"{image.name}.wasm").read_bytes()
        digest, read = oci.read_image(image.layout, "0.0.0-e2e")
        assert (digest, read) == (image.digest, module)
    again = oci.build(e2e.root / "dist", e2e.run_dir / "oci-again", "0.0.0-e2e")
    assert [i.digest for i in again] == [i.digest for i in images], "images are not reproducible"
    victim = again[0].layout / "blobs" / "sha256" / json.loads(
        (again[0].layout / "blobs" / "sha256" / again[0].digest.split(":")[1]).read_text())["layers"][-1]["digest"].split(":")[1]
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    try:
        oci.read_image(again[0].layout)
    except ValueError as e:
        assert "does not match its digest" in str(e), e
    else:
        raise AssertionError("a damaged layer was accepted")


def test_istio_manifests_validate_against_the_pinned_crds(e2e):
    """Every rendered manifest validates (strictly: unknown fields refused) against Istio's CRD
    schemas, and carries the images' digests; a misspelt field is caught (the check can fail)."""
    _, images, manifests = _images(e2e)
    kinds = set()
    for path in manifests:
        for doc in schemas.load_all(path):
            assert (doc["apiVersion"], doc["kind"]) in schemas.istio_schemas(), (path.name, doc["apiVersion"], doc["kind"])
            problems = schemas.errors(doc)
            assert not problems, f"{path.name}:\n" + "\n".join(problems)
            kinds.add(doc["kind"])
    assert kinds >= {"WasmPlugin", "EnvoyFilter", "ServiceEntry", "DestinationRule", "Gateway", "VirtualService"}, kinds
    text = "".join(p.read_text() for p in manifests)
    for image in images:
        assert image.digest.split(":")[1] in text, f"{image.name}'s digest is not in the manifests"
    assert "${" not in text
    bad = schemas.load_all(manifests[2])[0]
    bad["spec"]["failStrategy"] = "FAIL_RELAOD"
    bad["spec"]["pluginConfg"] = {}
    assert len(schemas.errors(bad)) == 2, schemas.errors(bad)


# ---- the chain as Istio delivers it ---------------------------------------------------------------

WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING = "type.googleapis.com/google.protobuf.StringValue"
TYPED_EXT = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def _merge(dst, src):
    """Istio's MERGE patch on JSON-shaped protos: maps merge, everything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _wasmplugin_to_extension(doc):
    """What istiod makes of a WasmPlugin: an ECDS Wasm config named <namespace>.<name>, the
    module as a remote `oci://` URL with the image digest, pluginConfig as a JSON string."""
    spec, meta = doc["spec"], doc["metadata"]
    return f"{meta['namespace']}.{meta['name']}", {
        "@type": WASM,
        "config": {
            "name": f"{meta['namespace']}.{meta['name']}",
            "root_id": spec["pluginName"],
            "failure_policy": spec["failStrategy"],
            "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                          # istiod names cluster "_" (the agent fetches) and passes the pull policy
                          # as an environment variable the agent removes again (pkg/wasm/convert.go).
                          "code": {"remote": {"http_uri": {"uri": spec["url"], "cluster": "_", "timeout": "30s"}, "sha256": spec["sha256"]}}},
            "configuration": {"@type": STRING, "value": json.dumps(spec["pluginConfig"])},
        }}


def _istio_bootstrap(e2e):
    """envoy/self_hosted.yaml's listener, routes and clusters with the chain taken from the rendered
    Istio manifests: the WasmPlugin as istiod translates it, the EnvoyFilter's extension configs
    and patches, each module resolved from its OCI image by digest into a local file (istio-agent's
    job), delivered through ECDS from files (`path_config_source`; Istio uses ADS)."""
    from duo_e2e import bootstrap

    oci, images, manifests = _images(e2e)
    docs = [d for p in manifests for d in schemas.load_all(p)]
    by_digest = {i.digest.split(":", 1)[1]: i for i in images}
    cache = e2e.run_dir / "istio-wasm-cache"
    cache.mkdir(exist_ok=True)

    def fetch_to_local(ext):
        code = ext["config"]["vm_config"]["code"]
        remote = code.pop("remote")
        image = by_digest[remote["sha256"]]  # the registry answers only for this digest
        digest, module = oci.read_image(image.layout)
        assert digest == f"sha256:{remote['sha256']}"
        assert remote["http_uri"]["uri"].startswith(f"oci://registry.e2e.test/duo/{image.name}:"), remote
        assert remote["http_uri"]["cluster"] == "_", remote  # what istiod writes; Envoy requires a cluster
        path = cache / f"{remote['sha256']}.wasm"
        path.write_bytes(module)
        code["local"] = {"filename": str(path)}
        return ext

    extensions = dict([_wasmplugin_to_extension(next(d for d in docs if d["kind"] == "WasmPlugin"))])
    chain = [{"name": next(iter(extensions)), "config_discovery": {"config_source": {"ads": {}}, "type_urls": [WASM]}}]
    ef = next(d for d in docs if d["kind"] == "EnvoyFilter")
    patches = ef["spec"]["configPatches"]
    for p in patches:
        if p["applyTo"] == "EXTENSION_CONFIG":
            extensions[p["patch"]["value"]["name"]] = p["patch"]["value"]["typed_config"]
        elif p["applyTo"] == "HTTP_FILTER":
            assert p["patch"]["operation"] == "INSERT_BEFORE" and p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
            chain.append(json.loads(json.dumps(p["patch"]["value"])))

    boot = bootstrap.load(e2e.root / "envoy" / "self_hosted.yaml")
    boot["node"] = {"id": "duo-gateway-e2e", "cluster": "duo-gateway"}
    hcm = next(bootstrap.hcms(boot))
    router = hcm["http_filters"][-1]
    for f in chain:
        cd = f.get("config_discovery")
        if cd:  # the gap to istio-agent: ECDS from a file instead of ADS
            ext = fetch_to_local(json.loads(json.dumps(extensions[f["name"]])))
            path = e2e.run_dir / f"ecds-{f['name']}.yaml"
            path.write_text(json.dumps({"resources": [{"@type": TYPED_EXT, "name": f["name"], "typed_config": ext}]}))
            cd["config_source"] = {"path_config_source": {"path": str(path)}, "initial_fetch_timeout": "10s"}
    hcm["http_filters"] = chain + [router]
    renames = {}
    for c in bootstrap.clusters(boot):
        sa = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        renames[c["name"]] = f"outbound|{sa['port_value']}||{sa['address']}"
        c["name"] = c["load_assignment"]["cluster_name"] = renames[c["name"]]
    for p in patches:
        value = p["patch"]["value"]
        if p["applyTo"] == "NETWORK_FILTER":
            _merge(hcm, value["typed_config"])
        elif p["applyTo"] == "LISTENER":
            _merge(boot["static_resources"]["listeners"][0], value)
        elif p["applyTo"] == "HTTP_ROUTE":
            catch_all = hcm["route_config"]["virtual_hosts"][0]["routes"][-1]
            catch_all["route"] = {}  # the VirtualService's placeholder destination is replaced
            _merge(catch_all, value)
        elif p["applyTo"] == "CLUSTER":
            name = f"outbound|{p['match']['cluster']['portNumber']}||{p['match']['cluster']['service']}"
            cluster = next(c for c in bootstrap.clusters(boot) if c["name"] == name)
            cluster.pop("typed_extension_protocol_options", None)  # the shipped SigV4: the patch must bring it
            _merge(cluster, value)
    out = e2e.run_dir / "istio_bootstrap.yaml"
    bootstrap.dump(boot, out)
    return out, renames


def test_istio_chain_as_istio_delivers_it(e2e):
    """The rendered manifests' chain in real Envoy: duo_logger (WasmPlugin) → jwt_authn → duo_auth
    → duo_router (EnvoyFilter extension configs with allow_on_headers_stop_iteration), modules
    fetched by digest from the OCI images. A vLLM completion (the body reaches duo_router), a
    SigV4-signed Bedrock generation (the CLUSTER patch), a bad token (401), one log record each."""
    from duo_e2e import FakeAzure, FakeBedrock, FakeGitLab, FakeVllm

    config, names = _istio_bootstrap(e2e)
    fakes = {names["gitlab"]: FakeGitLab(names["gitlab"], issuer="https://gitlab.example.com"),
             names["vllm_codestral"]: FakeVllm(names["vllm_codestral"], served_models=["Codestral-22B-v0.1"]),
             names["bedrock_us_east_1"]: FakeBedrock(names["bedrock_us_east_1"], models=["us.anthropic.claude-3-5-sonnet-20240620-v1:0"]),
             names["azure_eastus"]: FakeAzure(names["azure_eastus"], deployments=["gpt-4o-deploy"])}
    st = e2e.stack(str(config), name="istio", fakes=fakes)
    try:
        gitlab = st.fake(names["gitlab"])
        body = {"current_file": {"file_name": "a.py", "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\n"},
                "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
                "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-istio",
                "model_identifier": "custom_openai/Codestral-22B-v0.1"}
        r = st.post("/v2/code/completions", json_body=body, headers=gitlab.headers())
        assert r.status == 200, r.body
        assert st.fake(names["vllm_codestral"]).last().target == "/v1/completions"
        gen = {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n", "content_below_cursor": ""},
               "stream": False, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
               "prompt": "reverse a string", "model_name": "claude_3",
               "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
        r = st.post("/v2/code/generations", json_body=gen, headers=gitlab.headers())
        assert r.status == 200, r.body
        assert st.fake(names["bedrock_us_east_1"]).last().header("authorization", ).startswith("AWS4-HMAC-SHA256 ")
        r = st.post("/v2/code/completions", json_body=body, headers=gitlab.headers(token=gitlab.mint_bad_signature()))
        assert r.status == 401, r.body
        records = st.access_log(wait_for=3)
        assert [rec.get("status_code") for rec in records if isinstance(rec, dict)][-3:] == [200, 200, 401], records
        r = st.get("/monitoring/healthz")
        assert r.status == 200
        r = st.request("GET", "/nope", headers={"X-Big": "a" * 70000})
        assert r.status == 431 and r.json()["detail"], r  # local replies from the NETWORK_FILTER patch
    finally:
        st.stop()


def test_istio_egress_is_verified_and_matches_the_filters(e2e):
    """Every ServiceEntry port 443 has a DestinationRule that originates TLS and verifies the peer
    (CA bundle, SNI and SAN = the host); every cluster the filters name (duo_router's models,
    duo_auth's key source, jwt_authn's JWKS) is `outbound|<port>||<host>` of a ServiceEntry."""
    _, _, manifests = _images(e2e)
    docs = [d for p in manifests for d in schemas.load_all(p)]
    entries = {(h, p["number"]) for d in docs if d["kind"] == "ServiceEntry" for h in d["spec"]["hosts"] for p in d["spec"]["ports"]}
    rules = {d["spec"]["host"]: d["spec"]["trafficPolicy"] for d in docs if d["kind"] == "DestinationRule"}
    for host, port in entries:
        assert host in rules, f"no DestinationRule for {host}"
        if port == 443:
            tls = rules[host].get("tls", {})
            assert tls.get("mode") == "SIMPLE" and tls.get("sni") == host and tls.get("subjectAltNames") == [host], (host, tls)
            assert tls.get("caCertificates"), (host, tls)
    ef = next(d for d in docs if d["kind"] == "EnvoyFilter")
    named = set()
    for p in ef["spec"]["configPatches"]:
        value = p["patch"]["value"]
        cfg = value.get("typed_config", {}).get("config", {}).get("configuration", {}).get("value")
        if cfg:
            doc = json.loads(cfg)
            named |= {m["cluster"] for m in (doc.get("models") or {}).values()}
            named |= {s["cluster"] for s in doc.get("jwks_sources") or []}
        for prov in value.get("typed_config", {}).get("providers", {}).values():
            named.add(prov["remote_jwks"]["http_uri"]["cluster"])
    assert named, "no cluster named by the filters"
    for cluster in named:
        _, port, _, host = cluster.split("|")
        assert (host, int(port)) in entries, f"{cluster} is not a ServiceEntry host/port"
