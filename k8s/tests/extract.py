#!/usr/bin/env python3
"""Writes (or checks) k8s/tests/expected.json: what the manifests expect of
the two binaries, for the Rust tests that hold the binaries to it.

  metrics     every Prometheus series the autoscaling config reads (the HPA
              through the prometheus-adapter rules, the adapter rules
              themselves, the KEDA trigger's query), with the labels the
              exporter itself must emit (`labels`) and the labels the scrape
              adds and the exporter must therefore not emit (`target_labels`);
  scrape      where the ServiceMonitor, the plain scrape config and the pod
              annotations scrape each binary: path, container port and its
              name (`metrics`, the *_METRICS_LISTEN listener), and the API
              port (`api_port`), which must answer 404 on that path;
  containers  every environment variable set on each runbox container, per
              distinct container spec across the overlays, with a sample
              value for those filled in by Kubernetes (`valueFrom`).

Usage (from check.sh, with the overlays built into BUILD_DIR):
  extract.py BUILD_DIR --check   exit 1 if expected.json is stale
  extract.py BUILD_DIR --write   regenerate it
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import yaml

from manifests import (
    ADAPTER_VALUES,
    API_PORT_NAME,
    OVERLAYS,
    ROOT,
    SCRAPE_CONFIG,
    TARGET_LABELS,
    TESTS,
    binary_of,
    built,
    containers,
    find,
    of_kind,
    pod_spec,
    promql_selectors,
    ref,
)

EXPECTED = TESTS / "expected.json"
FORMAT_VERSION = 1


def exporter_of(metric: str) -> str:
    return metric.split("_", 1)[0]


class Metrics:
    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}

    def add(self, metric: str, labels: set[str], source: str) -> None:
        entry = self.by_name.setdefault(
            metric,
            {"name": metric, "exporter": exporter_of(metric), "labels": set(), "target_labels": set(), "referenced_by": set()},
        )
        entry["labels"] |= {lbl for lbl in labels if lbl not in TARGET_LABELS}
        entry["target_labels"] |= {lbl for lbl in labels if lbl in TARGET_LABELS}
        entry["referenced_by"].add(source)

    def as_json(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.by_name):
            e = self.by_name[name]
            out.append({
                "name": name,
                "exporter": e["exporter"],
                "labels": sorted(e["labels"]),
                "target_labels": sorted(e["target_labels"]),
                "referenced_by": sorted(e["referenced_by"]),
            })
        return out


def adapter_rules() -> list[dict[str, Any]]:
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8")) or {}
    return list((values.get("rules") or {}).get("custom") or [])


def adapter_exposed_name(rule: dict[str, Any], series: str) -> str:
    import re

    name = rule.get("name") or {}
    matches = name.get("matches") or "^(.*)$"
    as_ = name.get("as") or "$1"
    m = re.search(matches, series)
    if not m:
        return series
    # The adapter's `as` is a Go regexp template: $1, ${1}, ${name}.
    out = re.sub(r"\$\{?(\w+)\}?", lambda g: m.group(int(g.group(1)) if g.group(1).isdigit() else g.group(1)) or "", as_)
    return out


def collect(build_dir: pathlib.Path) -> dict[str, Any]:
    metrics = Metrics()
    adapter_file = str(ADAPTER_VALUES.relative_to(ROOT))

    # prometheus-adapter rules: the series they select, and the name each
    # exposes on custom.metrics.k8s.io.
    exposed: dict[str, list[tuple[str, set[str]]]] = {}
    for i, rule in enumerate(adapter_rules()):
        where = f"{adapter_file}: rules.custom[{i}]"
        selectors = promql_selectors(rule["seriesQuery"])
        overrides = set(((rule.get("resources") or {}).get("overrides") or {}).keys())
        for sel in selectors + promql_selectors(rule.get("metricsQuery", "")):
            labels = sel.labels | overrides
            metrics.add(sel.metric, labels, where)
            exposed.setdefault(adapter_exposed_name(rule, sel.metric), []).append((sel.metric, labels))

    scrape: dict[tuple[str, str, int], set[str]] = {}
    containers_out: dict[str, dict[str, Any]] = {}

    for overlay in OVERLAYS:
        docs = built(build_dir, overlay)
        ports: dict[tuple[str, str], int] = {}
        pod_labels: dict[str, str] = {}
        for w in of_kind(docs, "Deployment"):
            spec = pod_spec(w)
            for c in spec.get("containers") or []:
                binary = binary_of(c.get("image", ""))
                pod_labels[(w.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/name", "")] = binary
                for p in c.get("ports") or []:
                    if p.get("name"):
                        ports[(binary, p["name"])] = p["containerPort"]
                # Prometheus annotations on the pod template.
                ann = w.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
                if ann.get("prometheus.io/scrape") == "true":
                    port = int(ann.get("prometheus.io/port", 0))
                    key = (binary, ann.get("prometheus.io/path", "/metrics"), port)
                    scrape.setdefault(key, set()).add(f"{ref(w)} pod annotations prometheus.io/*")

            for c in containers(w):
                binary = binary_of(c.get("image", ""))
                env = []
                for e in c.get("env") or []:
                    item: dict[str, Any] = {"name": e["name"]}
                    if "value" in e:
                        item["value"] = str(e["value"])
                        item["source"] = "literal"
                    else:
                        source, sample = value_from(e.get("valueFrom") or {}, w)
                        item["value"] = sample
                        item["source"] = source
                    env.append(item)
                entry = {
                    "binary": binary,
                    "workload": ref(w),
                    "container": c["name"],
                    "env": env,
                }
                key = json.dumps(entry, sort_keys=True)
                containers_out.setdefault(key, {**entry, "overlays": []})["overlays"].append(overlay)

        # The HPA's custom metrics, resolved through the adapter rules.
        for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
            for i, m in enumerate(hpa.get("spec", {}).get("metrics") or []):
                src = m.get(m.get("type", "").lower().replace("containerresource", "containerResource")) or {}
                metric = (src.get("metric") or {})
                name = metric.get("name")
                if not name:
                    continue  # Resource metrics (cpu) come from metrics-server
                selector_labels = set(((metric.get("selector") or {}).get("matchLabels") or {}).keys())
                where = f"{ref(hpa)}: spec.metrics[{i}] (through the adapter)"
                for series, labels in exposed.get(name, []):
                    metrics.add(series, labels | selector_labels, where)

        # KEDA triggers.
        for so in of_kind(docs, "ScaledObject"):
            for i, t in enumerate(so.get("spec", {}).get("triggers") or []):
                if t.get("type") != "prometheus":
                    continue
                where = f"{ref(so)}: spec.triggers[{i}].metadata.query"
                for sel in promql_selectors((t.get("metadata") or {}).get("query", "")):
                    metrics.add(sel.metric, sel.labels, where)

    # The ServiceMonitors (a separate kustomization: k8s/monitoring).
    monitoring = built(build_dir, "monitoring")
    for sm in of_kind(monitoring, "ServiceMonitor"):
        selector = (sm["spec"].get("selector") or {}).get("matchLabels") or {}
        docs = built(build_dir, OVERLAYS[0])
        for svc in of_kind(docs, "Service"):
            labels = svc.get("metadata", {}).get("labels") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            target = svc["spec"].get("selector", {}).get("app.kubernetes.io/name", "")
            w = find(docs, "Deployment", target)
            if not w:
                continue
            for ep_i, ep in enumerate(sm["spec"].get("endpoints") or []):
                for sp in svc["spec"].get("ports") or []:
                    if sp.get("name") != ep.get("port"):
                        continue
                    for c in pod_spec(w).get("containers") or []:
                        for p in c.get("ports") or []:
                            if p.get("name") == sp.get("targetPort") or p.get("containerPort") == sp.get("targetPort"):
                                key = (binary_of(c["image"]), ep.get("path", "/metrics"), p["containerPort"])
                                scrape.setdefault(key, set()).add(f"{ref(sm)}: spec.endpoints[{ep_i}]")

    # The plain Prometheus scrape config.
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8")) or {}
    for job in config.get("scrape_configs") or []:
        keep = [r for r in job.get("relabel_configs") or [] if r.get("action") == "keep"]
        names = [r["regex"] for r in keep if r.get("source_labels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]]
        port_names = [r["regex"] for r in keep if r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]]
        docs = built(build_dir, OVERLAYS[0])
        for name in names:
            w = find(docs, "Deployment", name)
            if not w:
                continue
            for c in pod_spec(w).get("containers") or []:
                for p in c.get("ports") or []:
                    if p.get("name") in port_names:
                        key = (binary_of(c["image"]), job.get("metrics_path", "/metrics"), p["containerPort"])
                        scrape.setdefault(key, set()).add(f"{SCRAPE_CONFIG.relative_to(ROOT)}: job {job['job_name']}")

    # Each binary's container ports by number, and its API port.
    port_names: dict[str, dict[int, str]] = {}
    for w in of_kind(built(build_dir, OVERLAYS[0]), "Deployment"):
        for c in pod_spec(w).get("containers") or []:
            for p in c.get("ports") or []:
                port_names.setdefault(binary_of(c.get("image", "")), {})[p["containerPort"]] = p.get("name", "")

    def api_port(binary: str) -> int | None:
        return next((n for n, name in port_names.get(binary, {}).items() if name == API_PORT_NAME), None)

    return {
        "version": FORMAT_VERSION,
        "generated_by": "k8s/tests/extract.py (check.sh fails when this file is stale; regenerate with `bash k8s/tests/check.sh --update`)",
        "metrics": metrics.as_json(),
        "scrape": [
            {"exporter": b, "path": path, "port": port, "port_name": port_names.get(b, {}).get(port),
             "api_port": api_port(b), "referenced_by": sorted(srcs)}
            for (b, path, port), srcs in sorted(scrape.items())
        ],
        "containers": sorted(containers_out.values(), key=lambda c: (c["binary"], c["workload"], c["container"], c["overlays"])),
    }


def value_from(vf: dict[str, Any], workload: dict[str, Any]) -> tuple[str, str]:
    """How Kubernetes fills in a `valueFrom` variable, and a value it could take."""
    name = workload.get("metadata", {}).get("name", "pod")
    if "fieldRef" in vf:
        path = vf["fieldRef"].get("fieldPath", "")
        samples = {
            "metadata.name": f"{name}-7c9d8f6b5-x2x7k",
            "metadata.namespace": workload.get("metadata", {}).get("namespace", "default"),
            "spec.nodeName": "node-1",
            "status.podIP": "10.244.1.7",
            "status.hostIP": "192.168.56.11",
            "spec.serviceAccountName": pod_spec(workload).get("serviceAccountName", "default"),
        }
        return f"fieldRef:{path}", samples.get(path, "sample")
    if "resourceFieldRef" in vf:
        return f"resourceFieldRef:{vf['resourceFieldRef'].get('resource')}", "1"
    for kind in ("secretKeyRef", "configMapKeyRef"):
        if kind in vf:
            return f"{kind}:{vf[kind].get('name')}/{vf[kind].get('key')}", "sample"
    return "valueFrom", "sample"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir", type=pathlib.Path)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = ap.parse_args()

    text = json.dumps(collect(args.build_dir), indent=2) + "\n"
    if args.write:
        EXPECTED.write_text(text, encoding="utf-8")
        print(f"extract: wrote {EXPECTED.relative_to(ROOT)}")
        return 0
    current = EXPECTED.read_text(encoding="utf-8") if EXPECTED.exists() else ""
    if current != text:
        import difflib

        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile="k8s/tests/expected.json (committed)", tofile="k8s/tests/expected.json (from the manifests)",
        ))
        print("extract: k8s/tests/expected.json is stale; run `bash k8s/tests/check.sh --update` and commit it")
        return 1
    print("extract: k8s/tests/expected.json matches the manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
