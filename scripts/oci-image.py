#!/usr/bin/env python3
"""Write dcr-guard's .wasm as an OCI image layout that Istio's wasm fetcher (WasmPlugin `url: oci://`,
or an ECDS `remote` code source) accepts. No Docker engine; Python 3 standard library only.

    scripts/oci-image.py --wasm target/wasm32-wasip1/release/dcr_guard.wasm --out DIR --tag 0.1.0

Format: the Wasm image specification's "compat" variant with standard OCI media types: an OCI image
manifest with ONE layer `application/vnd.oci.image.layer.v1.tar+gzip` that holds only `plugin.wasm`,
an OCI image config, and the manifest annotation `module.wasm.image/variant: compat`. Istio's fetcher
(pkg/wasm/imagefetcher.go) reads the last layer of such an image as tar+gzip and takes `plugin.wasm`
from it. Chosen over the "oci" variant (`application/vnd.module.wasm.content.layer.v1+wasm`), which
Istio reads only from an image of exactly two layers and whose custom media types some registries,
registry mirrors, proxies and scanners refuse or skip: standard media types go wherever container
images go (any registry, `skopeo copy` between registries, air-gapped mirrors, signing with cosign).

Reproducible: the tar entry has fixed metadata (mtime 0, uid/gid 0, no user/group names, mode 0444),
the gzip header has no file name and mtime 0, and nothing else (no creation date) is recorded, so the
same .wasm always gives the same manifest digest (on the same zlib: a different zlib release may
compress differently). The digest printed last is the MANIFEST digest: what `oci://...@sha256:<hex>`
and the WasmPlugin's `sha256: <hex>` pin, since Istio compares that field with the manifest digest for
oci:// URLs (for https:// URLs it is the SHA-256 of the .wasm itself).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def canonical(obj):
    """The JSON bytes of a document: sorted keys, no spaces, so the digest depends on content only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(wasm):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mtime = 0
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" and mtime=0: no name and no time in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def write_blob(out, data):
    digest = sha256(data)
    path = os.path.join(out, "blobs", "sha256", digest.split(":", 1)[1])
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", required=True, help="the .wasm to ship")
    ap.add_argument("--out", required=True, help="the OCI image layout directory (replaced)")
    ap.add_argument("--tag", required=True, help="the tag recorded in index.json (e.g. 0.1.0)")
    args = ap.parse_args()

    with open(args.wasm, "rb") as f:
        wasm = f.read()
    if wasm[:4] != b"\0asm":
        sys.exit(f"{args.wasm} is not a WebAssembly module")

    # A fresh layout: stale blobs from an earlier build would make two builds differ.
    if os.path.exists(args.out):
        if os.listdir(args.out) and not os.path.exists(os.path.join(args.out, "oci-layout")):
            sys.exit(f"{args.out} exists and is not an OCI image layout: not replacing it")
        for root, dirs, files in os.walk(args.out, topdown=False):
            for name in files:
                os.remove(os.path.join(root, name))
            for name in dirs:
                os.rmdir(os.path.join(root, name))
    os.makedirs(os.path.join(args.out, "blobs", "sha256"), exist_ok=True)

    tar = layer_tar(wasm)
    layer = dict(write_blob(args.out, gzip_bytes(tar)), mediaType=LAYER_TYPE)
    config = {
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }
    config_desc = dict(write_blob(args.out, canonical(config)), mediaType=CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_desc,
        "layers": [layer],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": "dcr-guard",
            "org.opencontainers.image.version": args.tag,
        },
    }
    manifest_desc = dict(write_blob(args.out, canonical(manifest)), mediaType=MANIFEST_TYPE)
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": args.tag}
    with open(os.path.join(args.out, "index.json"), "wb") as f:
        f.write(canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [manifest_desc]}))
    with open(os.path.join(args.out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))

    print(f"OCI image layout {args.out} (tag {args.tag}): plugin.wasm {len(wasm)} bytes, "
          f"layer {layer['size']} bytes")
    print(f"wasm sha256 {hashlib.sha256(wasm).hexdigest()}")
    print(f"digest {manifest_desc['digest']}")


if __name__ == "__main__":
    main()
