#!/usr/bin/env python3
"""OCI images of the three filters, written without a container daemon (stdlib only).

    python3 examples/istio/oci.py build [--dist dist] [--out dist/oci] [--version 0.1.0]
    python3 examples/istio/oci.py read dist/oci/duo_router      # check an image, print its digest

`build` also renders the Istio manifests of examples/istio/manifests/ into dist/istio/ and the
Kubernetes manifests of examples/kubernetes/ into dist/kubernetes/ with the images' digests (`--registry` names where you push them; default `registry.example.com/duo`).

`build` writes one OCI image layout per filter (`dist/oci/<filter>/`: `oci-layout`, `index.json`,
`blobs/sha256/...`) and prints `<filter> sha256:<manifest digest>`. Each image is Istio's "compat"
variant: an OCI manifest whose last (only) layer has media type
`application/vnd.oci.image.layer.v1.tar+gzip` and is a gzip tar holding `plugin.wasm`, the format
Istio's image fetcher accepts (pkg/wasm/imagefetcher.go: `extractOCIStandardImage`). The bytes are
reproducible: fixed tar metadata and gzip header, so the same .wasm gives the same digest.

The manifest digest is what Istio compares with a WasmPlugin's `sha256` (and what
`oci://...@sha256:<digest>` names). Push a layout with any OCI tool, e.g.
`skopeo copy oci:dist/oci/duo_router:0.1.0 docker://registry.example.com/duo/duo_router:0.1.0`
or `oras cp --from-oci-layout dist/oci/duo_router:0.1.0 registry.example.com/duo/duo_router:0.1.0`.

`read` follows index -> manifest -> last layer as Istio's fetcher does, checks every digest,
size and media type, and returns `plugin.wasm`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

FILTERS = ("duo_logger", "duo_auth", "duo_router")
ISTIO_VERSION = "1.30.3"  # the Istio release the manifests are written and validated for
MANIFESTS = Path(__file__).resolve().parent / "manifests"
KUBERNETES = Path(__file__).resolve().parents[1] / "kubernetes"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
PLUGIN_FILE = "plugin.wasm"
EPOCH = 0  # fixed timestamps: reproducible layers


@dataclass
class Image:
    name: str
    layout: Path
    digest: str  # sha256:<hex> of the manifest
    wasm_sha256: str  # hex sha256 of plugin.wasm


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def layer_bytes(wasm: bytes) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it) holding only plugin.wasm, with fixed metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size, info.mtime, info.mode, info.uid, info.gid = len(wasm), EPOCH, 0o444, 0, 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=EPOCH, filename="") as g:
        g.write(tar_bytes)
    return tar_bytes, gz.getvalue()


def write_image(wasm_path: Path, out: Path, name: str, version: str) -> Image:
    wasm = wasm_path.read_bytes()
    if not wasm.startswith(b"\0asm"):
        raise SystemExit(f"{wasm_path} is not a wasm module")
    layout = out / name
    if layout.exists():
        for p in sorted(layout.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    layout.mkdir(parents=True, exist_ok=True)
    tar_bytes, gz_bytes = layer_bytes(wasm)
    layer = {"mediaType": LAYER, **_blob(layout, gz_bytes),
             "annotations": {"org.opencontainers.image.title": PLUGIN_FILE}}
    config = {"architecture": "wasm", "os": "wasip1", "created": "1970-01-01T00:00:00Z",
              "config": {}, "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]}}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, **_blob(layout, _canonical(config))},
                "layers": [layer],
                "annotations": {"org.opencontainers.image.title": name, "org.opencontainers.image.version": version,
                                "org.opencontainers.image.licenses": "MIT"}}
    mdesc = {"mediaType": MANIFEST, **_blob(layout, _canonical(manifest)),
             "annotations": {"org.opencontainers.image.ref.name": version}}
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(_canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": [mdesc]}))
    return Image(name, layout, str(mdesc["digest"]), hashlib.sha256(wasm).hexdigest())


def _read_blob(layout: Path, desc: dict[str, object]) -> bytes:
    digest = str(desc["digest"])
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64:
        raise ValueError(f"unsupported digest {digest}")
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    if hashlib.sha256(data).hexdigest() != hexd:
        raise ValueError(f"blob {digest} does not match its digest")
    if len(data) != desc["size"]:
        raise ValueError(f"blob {digest} is {len(data)} bytes, descriptor says {desc['size']}")
    return data


def read_image(layout: Path, ref: str | None = None) -> tuple[str, bytes]:
    """(manifest digest, plugin.wasm) of the image in an OCI layout (the tag `ref`, else the only one)."""
    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        raise ValueError("not an OCI image layout 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    manifests = [m for m in index["manifests"]
                 if ref is None or m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
    if len(manifests) != 1 or manifests[0].get("mediaType") != MANIFEST:
        raise ValueError(f"expected one image manifest{' tagged ' + ref if ref else ''}, found {manifests}")
    manifest = json.loads(_read_blob(layout, manifests[0]))
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MANIFEST:
        raise ValueError("not an OCI image manifest")
    config = json.loads(_read_blob(layout, manifest["config"]))
    layers = manifest.get("layers") or []
    if not layers:
        raise ValueError("number of layers must be greater than zero")
    last = layers[-1]  # Istio reads the last layer
    if last.get("mediaType") != LAYER:
        raise ValueError(f"invalid media type {last.get('mediaType')} (expect {LAYER})")
    gz = _read_blob(layout, last)
    tar_bytes = gzip.decompress(gz)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if diff_ids[-1:] != [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]:
        raise ValueError("config diff_ids do not match the layer")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if Path(member.name).name == PLUGIN_FILE and member.isfile():
                f = tar.extractfile(member)
                if f is not None:
                    return str(manifests[0]["digest"]), f.read()
    raise ValueError(f"{PLUGIN_FILE} not found in the archive")


def build(dist: Path, out: Path, version: str) -> list[Image]:
    images = []
    for name in FILTERS:
        wasm = dist / f"{name}.wasm"
        if not wasm.exists():
            raise SystemExit(f"{wasm} not found: run ./build.sh build first")
        image = write_image(wasm, out, name, version)
        digest, module = read_image(image.layout, version)
        if digest != image.digest or module != wasm.read_bytes():
            raise SystemExit(f"{name}: the written image does not read back to the module")
        images.append(image)
    (out / "digests.json").write_text(json.dumps(
        {i.name: {"image": i.digest, "plugin_wasm_sha256": i.wasm_sha256, "version": version} for i in images}, indent=2) + "\n")
    return images


def render_istio(images: list[Image], registry: str, version: str, out: Path, source: Path = MANIFESTS) -> list[Path]:
    """examples/istio/manifests/*.yaml (or `source`'s) with REGISTRY, VERSION, ISTIO_VERSION and
    each filter's image digest (`DUO_<FILTER>_SHA256`, hex) filled in; every placeholder must be known."""
    import string

    values = {"REGISTRY": registry, "VERSION": version, "ISTIO_VERSION": ISTIO_VERSION}
    values.update({f"{i.name.upper()}_SHA256": i.digest.split(":", 1)[1] for i in images})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(source.glob("*.yaml")):
        dst = out / src.name
        dst.write_text(string.Template(src.read_text()).substitute(values))
        written.append(dst)
    return written


def workspace_version(root: Path) -> str:
    import re

    m = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', (root / "Cargo.toml").read_text(), re.M | re.S)
    if not m:
        raise SystemExit("no [workspace.package] version in Cargo.toml")
    return m.group(1)


def main(argv: list[str]) -> int:
    import argparse

    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--dist", type=Path, default=root / "dist")
    b.add_argument("--out", type=Path, default=root / "dist" / "oci")
    b.add_argument("--version", default=None)
    b.add_argument("--registry", default="registry.example.com/duo")
    b.add_argument("--istio-out", type=Path, default=root / "dist" / "istio")
    r = sub.add_parser("read")
    r.add_argument("layout", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        version = args.version or workspace_version(root)
        images = build(args.dist, args.out, version)
        for image in images:
            print(f"{image.name} {image.digest}  (plugin.wasm sha256:{image.wasm_sha256})")
        for path in render_istio(images, args.registry, version, args.istio_out):
            print(f"rendered {path}")
        for path in render_istio(images, args.registry, version, args.istio_out.parent / "kubernetes", KUBERNETES):
            print(f"rendered {path}")
        return 0
    digest, module = read_image(args.layout)
    print(f"{args.layout.name} {digest}  plugin.wasm {len(module)} bytes sha256:{hashlib.sha256(module).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
