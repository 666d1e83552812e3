#!/usr/bin/env python3
"""Validates every object kustomize built, strictly (unknown fields are
errors), with kubernetes-validate's own schemas for each Kubernetes version
asked for. "No schema for this kind" is a failure, except for the custom
resources runbox ships (KEDA ScaledObject, Prometheus-operator
ServiceMonitor), which are checked against k8s/tests/schemas/ instead.
Also checks k8s/prometheus-adapter/values.yaml against its schema.

This is `kubernetes-validate --strict -k VERSION FILE…` through the
package's API (kubernetes_validate.validate), so that a missing schema can
be told apart from a pass instead of being printed as a warning.

Usage: validate.py --version 1.30 --version latest FILE.yaml…
Prints one line per file and version; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError, latest_version

from manifests import ADAPTER_VALUES, ROOT, TESTS, load_docs, ref

SCHEMAS = TESTS / "schemas"
# Kinds kubernetes-validate has no schema for, and the schema that replaces it.
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring.coreos.com-v1.json",
}


def check_schema(doc: object, schema_path: pathlib.Path) -> list[str]:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="append", required=True, help="Kubernetes version, or `latest`")
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    args = ap.parse_args()

    versions = [latest_version() if v == "latest" else v for v in args.version]
    failed = 0
    for path in args.files:
        docs = load_docs(path)
        for version in versions:
            errors: list[str] = []
            custom = 0
            for doc in docs:
                key = (doc.get("apiVersion"), doc.get("kind"))
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError as e:
                    if key in CUSTOM:
                        custom += 1
                        errors += [f"{ref(doc)}: {m}" for m in check_schema(doc, CUSTOM[key])]
                    else:
                        errors.append(f"{ref(doc)}: {e.message}")
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    errors.append(f"{ref(doc)}: {where}: {e.message}")
                except VersionNotSupportedError:
                    errors.append(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {version}")
                    break
                except Exception as e:  # an unusable schema is a failure, not a pass
                    errors.append(f"{ref(doc)}: could not be validated: {e}")
            label = f"{path.name} against {version}"
            if errors:
                failed += 1
                print(f"FAIL {label}:")
                for err in errors:
                    print(f"    {err}")
            else:
                extra = f" ({custom} custom resources against k8s/tests/schemas/)" if custom else ""
                print(f"ok   {label}: {len(docs)} objects{extra}")

    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
    errors = check_schema(values, SCHEMAS / "prometheus-adapter-values.json")
    label = str(ADAPTER_VALUES.relative_to(ROOT))
    if errors:
        failed += 1
        print(f"FAIL {label}:")
        for err in errors:
            print(f"    {err}")
    else:
        print(f"ok   {label} against k8s/tests/schemas/prometheus-adapter-values.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
