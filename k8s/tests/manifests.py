"""Shared by the k8s/ checks: where things are, loading the built overlays,
reading the contract, and a small PromQL reference scanner.

Everything here is offline: it reads files under k8s/ and the YAML that
check.sh built with kustomize into a directory (one `<target>.yaml` each).
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml

TESTS = pathlib.Path(__file__).resolve().parent
K8S = TESTS.parent
ROOT = K8S.parent

# The overlays a user deploys; every one is built, validated and checked.
OVERLAYS = ("kubeadm", "aks", "gke", "keda")

ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
SCRAPE_CONFIG = K8S / "monitoring" / "prometheus-scrape-config.yaml"

# The two ports of each runbox container (docs/contracts.md): the API on
# `http` (8080; /execute, /runtimes, /healthz, /readyz, /openapi.json; 404 on
# /metrics) and /metrics alone on `metrics` (9090, the *_METRICS_LISTEN
# listener), which only Prometheus may reach.
API_PORT_NAME, API_PORT = "http", 8080
METRICS_PORT_NAME, METRICS_PORT = "metrics", 9090
# Where Prometheus runs (cluster-setup installs it there) and its pods' label.
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}
# The Service clients reach (NodePort / LoadBalancer in the overlays).
PUBLIC_SERVICE = "gateway"

# Labels Prometheus attaches to a scraped series (target labels); an exporter
# must not emit them itself. Every other label a query names must come from
# the exporter.
TARGET_LABELS = frozenset({"namespace", "pod", "job", "instance", "service", "endpoint", "container"})


def load_docs(path: pathlib.Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def built(build_dir: pathlib.Path, target: str) -> list[dict[str, Any]]:
    return load_docs(build_dir / f"{target}.yaml")


def ref(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for d in docs:
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
            return d
    return None


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload.get("spec", {}).get("template", {}).get("spec", {})


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def template_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (`matchLabels`, `matchExpressions`) selects
    `labels`. An empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    """Every named container port of a workload's pods, name -> number."""
    return {p["name"]: p["containerPort"] for c in pod_spec(workload).get("containers") or []
            for p in c.get("ports") or [] if p.get("name")}


def resolve_port(port: Any, named: dict[str, int]) -> int | None:
    """A port as NetworkPolicies, Services and probes give it (a number or a
    container port name) as a number; None for a name the pods do not have."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    return named.get(port)


def binary_of(image: str) -> str:
    """`registry/runbox/executor:0.1.0@sha256:…` -> `executor`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def env_value(container: dict[str, Any], name: str, default: str | None = None) -> str | None:
    e = env_map(container).get(name)
    if e is None:
        return default
    return e.get("value")


def contract() -> dict[str, Any]:
    """The rows of docs/contracts.md's tables that the manifests must match."""
    rows: dict[str, str] = {}
    for line in (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            rows[cells[0]] = cells[1]

    def tick(row: str) -> str:
        found = re.findall(r"`([^`]*)`", rows.get(row, ""))
        if not found:
            raise SystemExit(f"docs/contracts.md has no `{row}` row with a value in backticks")
        return found[0]

    # The environment variables each binary takes, from the sections
    # "## Executor environment" and "## Gateway environment".
    env: dict[str, set[str]] = {"executor": set(), "gateway": set()}
    section = None
    for line in (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = next((b for b in env if line.lower().startswith(f"## {b} environment")), None)
        elif section:
            env[section] |= set(re.findall(r"`((?:EXECUTOR|GATEWAY)_[A-Z0-9_]+)`", line))
    return {
        "executor_env": env["executor"],
        "gateway_env": env["gateway"],
        "executor_image": tick("executor image"),
        "gateway_image": tick("gateway image"),
        "namespace": tick("namespace"),
    }


def quantity(q: Any) -> float:
    """A Kubernetes quantity (`2`, `1500m`, `1536Mi`) as a number."""
    s = str(q).strip()
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * suffixes[suffix]
    return float(s)


# --- PromQL -----------------------------------------------------------------

@dataclass
class Selector:
    """One metric a query reads, and the labels the query needs on it."""

    metric: str
    labels: set[str] = field(default_factory=set)


_TOKEN = re.compile(
    r"""
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<tmpl><<[^>]*>>)
  | (?P<num>[0-9][0-9a-zA-Z_.]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[=<>{}()\[\],+\-*/%^@])
  | (?P<ws>\s+)
    """,
    re.VERBOSE,
)
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2",
    # aggregation operators, which may be followed by a grouping clause
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def promql_selectors(expr: str) -> list[Selector]:
    """Every metric selector in `expr` with the label names its matchers and
    its grouping clauses (`by`, `on`, …) use. Good for the queries runbox
    writes; not a full PromQL parser. Templates (`<<.Series>>`) are skipped."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup or "", m.group()))

    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and nxt == "(":
            j = i + 2
            while j < len(tokens) and tokens[j][1] != ")":
                if tokens[j][0] == "ident":
                    grouping.add(tokens[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and (text in _KEYWORDS or nxt == "("):
            i += 1  # a keyword, function or aggregation
            continue
        if (kind == "ident") or (kind == "op" and text == "{"):
            sel = Selector(metric=text if kind == "ident" else "")
            j = i + 1 if kind == "ident" else i
            if j < len(tokens) and tokens[j][1] == "{":
                j += 1
                while j < len(tokens) and tokens[j][1] != "}":
                    if tokens[j][0] == "ident" and j + 1 < len(tokens) and tokens[j + 1][1] in ("=", "!=", "=~", "!~"):
                        label = tokens[j][1]
                        value = tokens[j + 2][1] if j + 2 < len(tokens) else ""
                        if label == "__name__" and tokens[j + 1][1] == "=":
                            sel.metric = value.strip("\"'`")
                        else:
                            sel.labels.add(label)
                        j += 3
                    else:
                        j += 1
            if sel.metric:
                selectors.append(sel)
            i = j + 1
            continue
        i += 1
    for sel in selectors:
        sel.labels |= grouping
    return selectors
