#!/usr/bin/env python3
"""Derive envoy/kong/dcr_guard.meta.json (Kong's filter metadata) from envoy/kong/dcr-guard.schema.json.

    scripts/kong-meta.py            # rewrite envoy/kong/dcr_guard.meta.json
    scripts/kong-meta.py --check    # exit 1 if the committed file is not what the schema gives

Kong (3.5 and later) reads `<filter>.meta.json` next to `<filter>.wasm` in `wasm_filters_path` and
validates a filter chain's `config` against its `config_schema` when the configuration is loaded
(Admin API, declarative `kong.yaml`), with a JSON-Schema Draft 4 validator. The repository's schema is
written in Draft 2020-12; the two differ, for what it uses, only in `$defs` (Draft 4: `definitions`)
and `const` (Draft 4: a one-value `enum`). Any other keyword outside Draft 4 makes this script fail,
so that a schema change cannot silently produce a Kong schema that means something else.
tests/kits.rs runs `--check`.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "envoy", "kong", "dcr-guard.schema.json")
TARGET = os.path.join(ROOT, "envoy", "kong", "dcr_guard.meta.json")

# Draft 4 keywords (http://json-schema.org/draft-04/schema) the conversion passes through unchanged.
DRAFT4 = {
    "$ref", "title", "description", "default", "type", "enum", "format",
    "properties", "additionalProperties", "patternProperties", "required", "items",
    "additionalItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minProperties", "maxProperties", "dependencies", "allOf", "anyOf", "oneOf", "not",
}
# Keys whose value is a map from names to schemas (not keywords).
SCHEMA_MAPS = {"properties", "patternProperties", "definitions"}


def convert(node, path):
    if isinstance(node, list):
        return [convert(v, f"{path}/{i}") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        where = f"{path}/{key}"
        if key == "$schema":
            continue
        if key == "$defs":
            out["definitions"] = {k: convert(v, f"{where}/{k}") for k, v in value.items()}
        elif key == "const":
            out["enum"] = [value]
        elif key == "$ref":
            if not value.startswith("#/$defs/"):
                sys.exit(f"{where}: only local #/$defs/ references are converted, not {value}")
            out["$ref"] = "#/definitions/" + value[len("#/$defs/"):]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            sys.exit(f"{where}: a numeric {key} (Draft 6+) has no Draft 4 form here; use minimum/maximum")
        elif key in SCHEMA_MAPS:
            out[key] = {k: convert(v, f"{where}/{k}") for k, v in value.items()}
        elif key in ("enum", "required", "default", "title", "description", "type", "format", "pattern"):
            out[key] = value
        elif key in DRAFT4:
            out[key] = convert(value, where)
        else:
            sys.exit(f"{where}: `{key}` is not a Draft 4 keyword: teach scripts/kong-meta.py its Draft 4 form")
    return out


def render():
    with open(SOURCE, encoding="utf-8") as f:
        schema = json.load(f)
    config_schema = {"$schema": "http://json-schema.org/draft-04/schema#"}
    config_schema.update(convert(schema, "#"))
    return json.dumps({"config_schema": config_schema}, indent=2, ensure_ascii=False) + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        try:
            with open(TARGET, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            sys.exit(f"{os.path.relpath(TARGET, ROOT)} is not derived from "
                     f"{os.path.relpath(SOURCE, ROOT)}: run scripts/kong-meta.py (make kong-meta)")
        print(f"{os.path.relpath(TARGET, ROOT)} matches {os.path.relpath(SOURCE, ROOT)}")
        return
    if sys.argv[1:]:
        sys.exit("usage: scripts/kong-meta.py [--check]")
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(TARGET, ROOT)}")


if __name__ == "__main__":
    main()
