#!/usr/bin/env python3
"""Checks that the names several parts of runbox must agree on are the same
everywhere in cluster-setup/, in docs/contracts.md and in k8s/:

  - kubeadm/group_vars/all.yml (the source of truth) equals docs/contracts.md
    for the Kubernetes version, pod/service CIDRs, VM network, namespace and images;
  - the pod CIDR, service CIDR and VM network do not overlap;
  - every literal in cluster-setup/ (Vagrantfile, scripts, playbooks, docs) that
    names a runbox image, a Kubernetes version or a network agrees with it, and
    so do the image names in the Dockerfiles (<crate>/Dockerfile);
  - every `setting KEY` the shell scripts read exists in group_vars;
  - if k8s/ exists: every runbox image reference and kustomize `images:` entry
    uses the same tag; the overlays the scripts deploy exist; kustomizations use
    runbox's namespace; k8s/ looks for Prometheus where cluster-setup installs it
    (KEDA's serverAddress, the NetworkPolicies' namespace); the Prometheus
    cluster-setup installs can scrape every runbox pod (annotated
    prometheus.io/scrape, prometheus.io/port = its container port `metrics`,
    which a NetworkPolicy admits Prometheus from that namespace to); and the
    adapter rules serve executor_utilisation.

Usage: consistency.py [REPO_ROOT]   (needs PyYAML; check.sh runs it from its venv)
"""

import ipaddress
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
CS = ROOT / "cluster-setup"
# loopback/ is not a cluster of the contract: it pins the Go modules of the
# end-to-end test's control plane (its own version, pod range and ports,
# all in xtask/src/loopback.rs), which never runs the kubeadm playbook.
SKIP_DIRS = {".vagrant", ".images", ".kube", ".build", "__pycache__", "node_modules", "loopback"}
SKIP_FILES = {"requirements.txt", "requirements.in"}
TEXT_SUFFIXES = {".yml", ".yaml", ".sh", ".md", ".ini", ".cfg", ".j2", ".py", ".toml", ""}

IMAGE_RE = re.compile(r"\brunbox/(executor|gateway):([A-Za-z0-9][A-Za-z0-9._-]*)")
CIDR_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3}/\d{1,2})(?![\d.])")
POD_LINE_RE = re.compile(r"(?i)pod[ _-]?(cidr|subnet|range)|cluster-ipv4-cidr|podSubnet|ip ?pool")
VERSION_RES = [
    re.compile(r"pkgs\.k8s\.io/core:/stable:/v(\d+\.\d+)"),
    re.compile(r"\bKubernetes (?:version )?v?(1\.\d+)\b"),
    re.compile(r"(?i)\bk8s[_ -]?version\b[^\n]*?\bv?(1\.\d\d)\b"),
    re.compile(r"(?i)\bkubernetes_version:\s*\"?v?(\d+\.\d+)"),
    re.compile(r"--(?:kubernetes|cluster)-version[ =]\"?v?(1\.\d+)\b"),
]

errors = []


def fail(where, msg):
    errors.append(f"{where}: {msg}")


def rel(path):
    return path.relative_to(ROOT)


def text_files(base):
    for path in sorted(base.rglob("*")):
        if any(part in SKIP_DIRS for part in path.relative_to(base).parts):
            continue
        if path.is_file() and path.name not in SKIP_FILES and (path.suffix in TEXT_SUFFIXES or path.name == "Vagrantfile"):
            try:
                yield path, path.read_text()
            except UnicodeDecodeError:
                continue


def contracts():
    """The values docs/contracts.md fixes, read from its tables' rows."""
    rows = {}
    for line in (ROOT / "docs" / "contracts.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            rows[cells[0]] = cells[1]
    need = ("executor image", "gateway image", "namespace", "Kubernetes version (cluster setup)", "pod CIDR")
    missing = [row for row in need if row not in rows]
    if missing:
        sys.exit(f"consistency: docs/contracts.md has no row for {', '.join(missing)}")

    def ticks(row):
        return re.findall(r"`([^`]*)`", rows[row])

    k8s = rows["Kubernetes version (cluster setup)"]
    nets = ticks("pod CIDR")
    return {
        "executor": ticks("executor image")[0],
        "gateway": ticks("gateway image")[0],
        "namespace": ticks("namespace")[0],
        "k8s": re.search(r"\d+\.\d+", k8s).group(0),
        "k8s_repo": (re.findall(r"`(v[^`]*)`", k8s) or [""])[0],
        "pod": nets[0],
        "service": nets[1] if len(nets) > 1 else None,
        "vm": nets[2] if len(nets) > 2 else None,
    }


def check_k8s_wiring(k8s, gv, truth):
    """What cluster-setup deploys from k8s/ exists, and k8s/ looks for the
    monitoring stack where cluster-setup installs it."""
    monitoring = gv["monitoring_namespace"]
    base_docs = []
    for part in ("overlays/kubeadm", "overlays/aks", "overlays/gke", "overlays/keda", "components/keda"):
        if not (k8s / part / "kustomization.yaml").is_file():
            fail("k8s/", f"{part}/kustomization.yaml is missing, but cluster-setup deploys it")
    for path, text in text_files(k8s):
        where = str(rel(path))
        for ns in re.findall(r"prometheus-server\.([a-z0-9-]+)\.svc", text):
            if ns != monitoring:
                fail(where, f"looks for Prometheus in namespace {ns}, cluster-setup installs it in {monitoring}")
        if path.suffix not in (".yaml", ".yml") or "tests" in path.relative_to(k8s).parts:
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        except yaml.YAMLError as e:
            fail(where, f"not YAML: {e}")
            continue
        if path.relative_to(k8s).parts[0] == "base":
            base_docs += [(where, doc) for doc in docs]
        for doc in docs:
            if path.name.startswith("kustomization.") and "namespace" in doc and doc["namespace"] != truth["namespace"]:
                fail(where, f"namespace {doc['namespace']!r}, expected {truth['namespace']!r}")
            if doc.get("kind") == "NetworkPolicy":
                for rule in (doc.get("spec") or {}).get("ingress") or []:
                    for peer in rule.get("from") or []:
                        pod = ((peer.get("podSelector") or {}).get("matchLabels") or {})
                        ns = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {})
                        if pod.get("app.kubernetes.io/name") == "prometheus" and \
                                ns.get("kubernetes.io/metadata.name", monitoring) != monitoring:
                            fail(where, f"admits Prometheus from namespace {ns['kubernetes.io/metadata.name']}, "
                                        f"cluster-setup installs it in {monitoring}")
    check_scrapable(base_docs, monitoring)
    # prometheus-adapter gets cluster-setup's connection values, then k8s/'s rules.
    base_path = CS / "values" / "prometheus-adapter.yaml"
    base = yaml.safe_load(base_path.read_text()) or {}
    prom = base.get("prometheus") or {}
    if prom.get("url") != f"http://prometheus-server.{monitoring}.svc" or int(prom.get("port", 0)) != 80:
        fail(str(rel(base_path)), f"prometheus {prom.get('url')}:{prom.get('port')}, but the prometheus chart "
                                  f"serves http://prometheus-server.{monitoring}.svc:80")
    rules_path = ROOT / gv["runbox_adapter_values"]
    if not rules_path.is_file():
        fail(str(rel(rules_path)), "missing: cluster-setup installs prometheus-adapter with it")
        return
    rules = yaml.safe_load(rules_path.read_text()) or {}
    if "executor_utilisation" not in yaml.safe_dump(rules.get("rules") or {}):
        fail(str(rel(rules_path)), "its rules never mention executor_utilisation (the HPA's metric)")
    # The Ansible helm module compares values files merged one level deep.
    shared = sorted(set(base) & set(rules))
    if shared:
        fail(str(rel(rules_path)), f"shares top-level keys {shared} with {rel(base_path)}; keep them apart")


def check_scrapable(base_docs, monitoring):
    """cluster-setup's Prometheus (the prometheus chart's kubernetes-pods job)
    finds runbox's pods by their prometheus.io/* annotations and scrapes the
    annotated port: every Deployment in k8s/base must be annotated, on its
    container port `metrics` (the API port answers 404 on /metrics), and a
    NetworkPolicy must admit Prometheus from the monitoring namespace to it."""
    policies = [(w, d) for w, d in base_docs if d.get("kind") == "NetworkPolicy"]
    for where, dep in base_docs:
        if dep.get("kind") != "Deployment":
            continue
        name = (dep.get("metadata") or {}).get("name")
        template = (dep.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        ann = (template.get("metadata") or {}).get("annotations") or {}
        ports = {p.get("name"): p.get("containerPort") for c in (template.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or []}
        if ann.get("prometheus.io/scrape") != "true":
            fail(where, f"Deployment {name} is not annotated prometheus.io/scrape: \"true\"; "
                        "the Prometheus cluster-setup installs would never scrape it")
            continue
        port = str(ann.get("prometheus.io/port", ""))
        if "metrics" not in ports or port != str(ports["metrics"]):
            fail(where, f"Deployment {name} is scraped on prometheus.io/port {port or '(none)'}, "
                        f"not its container port `metrics` ({ports.get('metrics')})")
            continue
        admitted = False
        for _, pol in policies:
            spec = pol.get("spec") or {}
            selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            for rule in spec.get("ingress") or []:
                from_prometheus = any(
                    ((peer.get("podSelector") or {}).get("matchLabels") or {}).get("app.kubernetes.io/name") == "prometheus"
                    and ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name") == monitoring
                    for peer in rule.get("from") or [])
                if from_prometheus and any(str(p.get("port")) in ("metrics", port) for p in rule.get("ports") or []):
                    admitted = True
        if not admitted:
            fail(where, f"Deployment {name}: no NetworkPolicy in k8s/base admits Prometheus (namespace {monitoring}) "
                        f"to its metrics port {port}")


def main():
    gv = yaml.safe_load((CS / "kubeadm" / "group_vars" / "all.yml").read_text())
    truth = {
        "executor": gv["runbox_executor_image"],
        "gateway": gv["runbox_gateway_image"],
        "namespace": gv["runbox_namespace"],
        "k8s": str(gv["kubernetes_version"]),
        "pod": gv["pod_cidr"],
        "service": gv["service_cidr"],
        "vm": gv["vm_network"],
    }
    images = {truth["executor"].split(":")[0]: truth["executor"], truth["gateway"].split(":")[0]: truth["gateway"]}
    checked = {"files": 0, "images": 0, "versions": 0, "cidrs": 0}

    # group_vars against the contract.
    c = contracts()
    for key in ("executor", "gateway", "namespace", "k8s", "pod", "service", "vm"):
        if c.get(key) is not None and c[key] != truth[key]:
            fail("kubeadm/group_vars/all.yml", f"{key} is {truth[key]!r}, docs/contracts.md says {c[key]!r}")
    if c["k8s_repo"] and c["k8s_repo"] != f"v{truth['k8s']}":
        fail("docs/contracts.md", f"package repo {c['k8s_repo']!r} does not match version {truth['k8s']}")

    # Networks must not overlap (Calico would route the VMs' own addresses into pods).
    nets = {k: ipaddress.ip_network(truth[k]) for k in ("pod", "service", "vm")}
    for a, b in (("pod", "service"), ("pod", "vm"), ("service", "vm")):
        if nets[a].overlaps(nets[b]):
            fail("kubeadm/group_vars/all.yml", f"{a} network {nets[a]} overlaps {b} network {nets[b]}")
    known_cidrs = {truth["pod"], truth["service"], truth["vm"]}

    # Every literal in cluster-setup/.
    settings = set(gv)
    for path, text in text_files(CS):
        checked["files"] += 1
        where = str(rel(path))
        for n, line in enumerate(text.splitlines(), 1):
            at = f"{where}:{n}"
            for name, tag in IMAGE_RE.findall(line):
                checked["images"] += 1
                want = images[f"runbox/{name}"]
                if f"runbox/{name}:{tag}" != want:
                    fail(at, f"image runbox/{name}:{tag}, expected {want}")
            for regex in VERSION_RES:
                for version in regex.findall(line):
                    checked["versions"] += 1
                    if version != truth["k8s"]:
                        fail(at, f"Kubernetes version {version}, expected {truth['k8s']}")
            cidrs = CIDR_RE.findall(line)
            for cidr in cidrs:
                checked["cidrs"] += 1
                if cidr not in known_cidrs:
                    fail(at, f"network {cidr} is none of the contract's (pod {truth['pod']}, service {truth['service']}, VM {truth['vm']})")
            if POD_LINE_RE.search(line) and len(cidrs) == 1 and cidrs[0] != truth["pod"]:
                fail(at, f"pod CIDR {cidrs[0]}, expected {truth['pod']}")
        if path.suffix == ".sh":
            for key in re.findall(r"\$\(setting ([a-z_]+)\)", text):
                if key not in settings:
                    fail(where, f"reads setting {key!r}, which group_vars/all.yml does not define")

    # The Dockerfiles' build instructions name the images too.
    for path in sorted(ROOT.glob("*/Dockerfile")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name, tag in IMAGE_RE.findall(line):
                checked["images"] += 1
                if f"runbox/{name}:{tag}" != images[f"runbox/{name}"]:
                    fail(f"{rel(path)}:{n}", f"image runbox/{name}:{tag}, expected {images[f'runbox/{name}']}")

    # k8s/, when the manifests are there.
    k8s = ROOT / "k8s"
    if k8s.is_dir():
        for path, text in text_files(k8s):
            where = str(rel(path))
            for n, line in enumerate(text.splitlines(), 1):
                for name, tag in IMAGE_RE.findall(line):
                    checked["images"] += 1
                    if f"runbox/{name}:{tag}" != images[f"runbox/{name}"]:
                        fail(f"{where}:{n}", f"image runbox/{name}:{tag}, expected {images[f'runbox/{name}']}")
            if path.name in ("kustomization.yaml", "kustomization.yml"):
                for doc in yaml.safe_load_all(text):
                    for entry in (doc or {}).get("images") or []:
                        name = entry.get("name", "")
                        if name in images and "newTag" in entry:
                            checked["images"] += 1
                            want = images[name].split(":")[1]
                            if str(entry["newTag"]) != want:
                                fail(where, f"images: {name} newTag {entry['newTag']!r}, expected {want!r}")
        if (k8s / "base").is_dir():
            check_k8s_wiring(k8s, gv, truth)

    for e in errors:
        print(f"consistency: {e}")
    print(
        f"consistency: {checked['files']} files, {checked['images']} image refs, "
        f"{checked['versions']} Kubernetes versions, {checked['cidrs']} networks checked; "
        f"{len(errors)} problem(s)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
