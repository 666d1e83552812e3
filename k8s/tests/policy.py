#!/usr/bin/env python3
"""The rules runbox's manifests must keep that no schema or scanner knows:
one autoscaler per Deployment, numbers that must agree across objects (CPU
request and concurrency, HPA and KEDA targets, drain times and grace
periods), the names the gateway and Prometheus depend on, and the security
settings each pod must carry. Run on each built overlay.

Usage: policy.py BUILD_DIR TARGET…   (TARGET: an overlay built to BUILD_DIR/TARGET.yaml)
Prints one line per target; exits 1 if any rule is broken.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import yaml

from manifests import (
    ADAPTER_VALUES,
    binary_of,
    built,
    contract,
    env_value,
    find,
    of_kind,
    pod_spec,
    quantity,
    ref,
)

# The executor's defaults (executor/src/config.rs), for variables a manifest
# leaves unset.
EXECUTOR_DEFAULTS = {"EXECUTOR_MAX_TIMEOUT_MS": "30000", "EXECUTOR_QUEUE_TIMEOUT_MS": "10000"}
AUTOSCALED_BY_CUSTOM_METRIC = "executor_inflight_executions"
PORT = 8080  # docs/contracts.md: one port, 8080, in containers
NO_EGRESS = "executor"  # the workload that may send nothing at all


class Rules:
    def __init__(self, target: str, docs: list[dict[str, Any]]) -> None:
        self.target = target
        self.docs = docs
        self.errors: list[str] = []

    def fail(self, msg: str) -> None:
        self.errors.append(msg)

    def expect(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.fail(msg)
        return cond

    # --- one autoscaler per Deployment ------------------------------------
    def autoscalers(self) -> None:
        owners: dict[str, list[str]] = {}
        for hpa in of_kind(self.docs, "HorizontalPodAutoscaler"):
            t = hpa["spec"]["scaleTargetRef"]
            owners.setdefault(f"{t['kind']}/{t['name']}", []).append(ref(hpa))
        for so in of_kind(self.docs, "ScaledObject"):
            t = so["spec"]["scaleTargetRef"]
            owners.setdefault(f"{t.get('kind', 'Deployment')}/{t['name']}", []).append(ref(so))
        for target, by in owners.items():
            self.expect(len(by) == 1, f"{target} is scaled by {len(by)} autoscalers at once ({', '.join(by)}); they would fight")
            kind, name = target.split("/", 1)
            self.expect(find(self.docs, kind, name) is not None, f"{', '.join(by)} scales {target}, which this overlay does not contain")
        self.expect(
            "Deployment/executor" in owners,
            "nothing autoscales Deployment/executor (neither a HorizontalPodAutoscaler nor a KEDA ScaledObject)",
        )
        executor = find(self.docs, "Deployment", "executor")
        if executor is not None:
            self.expect("replicas" not in executor["spec"], "Deployment/executor sets spec.replicas, which every apply would reset under the autoscaler")

    # --- numbers that must agree -----------------------------------------
    def executor_sizing(self) -> None:
        ex = find(self.docs, "Deployment", "executor")
        if not self.expect(ex is not None, "no Deployment/executor"):
            return
        c = pod_spec(ex)["containers"][0]
        conc = env_value(c, "EXECUTOR_CONCURRENCY")
        cpu = c.get("resources", {}).get("requests", {}).get("cpu")
        if not self.expect(conc is not None and cpu is not None, "executor: EXECUTOR_CONCURRENCY and a CPU request must both be set"):
            return
        concurrency = int(conc)
        self.expect(
            abs(quantity(cpu) - concurrency) < 1e-9,
            f"executor: EXECUTOR_CONCURRENCY={concurrency} but requests.cpu={cpu}; one execution per requested CPU",
        )
        # The autoscaling target: 70–75 % of the per-pod concurrency.
        lo, hi = 0.70 * concurrency, 0.75 * concurrency
        for hpa in of_kind(self.docs, "HorizontalPodAutoscaler"):
            for m in hpa["spec"].get("metrics") or []:
                if m.get("type") == "Pods" and m["pods"]["metric"]["name"] == AUTOSCALED_BY_CUSTOM_METRIC:
                    target = m["pods"]["target"]
                    self.expect(target.get("type") == "AverageValue", f"{ref(hpa)}: the Pods metric target must be an AverageValue")
                    v = quantity(target.get("averageValue", 0))
                    self.expect(lo - 1e-9 <= v <= hi + 1e-9, f"{ref(hpa)}: target {v} per pod is not 70–75% of EXECUTOR_CONCURRENCY={concurrency}")
        for so in of_kind(self.docs, "ScaledObject"):
            for t in so["spec"]["triggers"]:
                if t["type"] == "prometheus":
                    self.expect(t.get("metricType", "AverageValue") == "AverageValue", f"{ref(so)}: the prometheus trigger must use metricType AverageValue (per-pod target)")
                    v = float(t["metadata"]["threshold"])
                    self.expect(lo - 1e-9 <= v <= hi + 1e-9, f"{ref(so)}: threshold {v} per pod is not 70–75% of EXECUTOR_CONCURRENCY={concurrency}")
                    self.expect(AUTOSCALED_BY_CUSTOM_METRIC in t["metadata"]["query"], f"{ref(so)}: the query does not read {AUTOSCALED_BY_CUSTOM_METRIC}")
        # Draining: the kubelet must not kill an executor that is still
        # finishing admitted work.
        max_run = int(env_value(c, "EXECUTOR_MAX_TIMEOUT_MS", EXECUTOR_DEFAULTS["EXECUTOR_MAX_TIMEOUT_MS"]) or 0)
        queue = int(env_value(c, "EXECUTOR_QUEUE_TIMEOUT_MS", EXECUTOR_DEFAULTS["EXECUTOR_QUEUE_TIMEOUT_MS"]) or 0)
        sleep = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        grace = pod_spec(ex).get("terminationGracePeriodSeconds", 30)
        need = sleep + (max_run + queue) / 1000 + 1
        self.expect(grace > need, f"executor: terminationGracePeriodSeconds={grace} must exceed preStop {sleep}s + max run {max_run}ms + queue {queue}ms + 1s")
        gw = find(self.docs, "Deployment", "gateway")
        if gw is not None:
            g = pod_spec(gw)["containers"][0]
            req = env_value(g, "GATEWAY_REQUEST_TIMEOUT_MS")
            if self.expect(req is not None, "gateway: GATEWAY_REQUEST_TIMEOUT_MS must be set (longer than an execution can take)"):
                self.expect(int(req) > max_run + queue, f"gateway: GATEWAY_REQUEST_TIMEOUT_MS={req} must exceed the executor's max run + queue wait ({max_run + queue} ms)")
                gsleep = ((g.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
                ggrace = pod_spec(gw).get("terminationGracePeriodSeconds", 30)
                self.expect(ggrace > gsleep + int(req) / 1000, f"gateway: terminationGracePeriodSeconds={ggrace} must exceed preStop {gsleep}s + request timeout {req}ms")

    # --- names others depend on --------------------------------------------
    def names(self) -> None:
        c = contract()
        images = {c["executor_image"], c["gateway_image"]}
        for d in self.docs:
            if d.get("kind") not in ("Namespace",):
                self.expect(d.get("metadata", {}).get("namespace") == c["namespace"], f"{ref(d)} is not in namespace {c['namespace']}")
        self.expect(find(self.docs, "Namespace", c["namespace"]) is not None, f"no Namespace/{c['namespace']}")
        for w in of_kind(self.docs, "Deployment"):
            for ctr in pod_spec(w)["containers"]:
                # The contract's image, under a (placeholder) registry in the
                # clouds: cluster-setup finds it by this suffix to re-point it.
                self.expect(
                    any(ctr["image"] == i or ctr["image"].endswith("/" + i) for i in images),
                    f"{ref(w)}: image {ctr['image']} is not one of the contract's {sorted(images)} (optionally under a registry)",
                )
                ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports") or []}
                self.expect(ports.get("http") == PORT, f"{ref(w)}: container port `http` must be {PORT} (contract; the gateway finds executors by this name)")
                self.expect(not ctr.get("command") and not ctr.get("args"), f"{ref(w)}: configure through env, not command/args")
                self.expect(not ctr.get("envFrom"), f"{ref(w)}: every variable is named in `env` (envFrom hides them from the env test)")
                # A first line of defence; the Rust env test parses them with
                # the binaries' real config structs.
                known = c.get(f"{binary_of(ctr['image'])}_env") or set()
                for e in ctr.get("env") or []:
                    self.expect(e["name"] in known, f"{ref(w)}: {e['name']} is not an environment variable of the {binary_of(ctr['image'])} in docs/contracts.md")
        svc = find(self.docs, "Service", "executor")
        gw = find(self.docs, "Deployment", "gateway")
        if self.expect(svc is not None and gw is not None, "need Service/executor and Deployment/gateway"):
            g = pod_spec(gw)["containers"][0]
            service = env_value(g, "GATEWAY_K8S_SERVICE", "executor")
            port_name = env_value(g, "GATEWAY_K8S_PORT_NAME", "http")
            self.expect(env_value(g, "GATEWAY_DISCOVERY") == "kubernetes", "gateway: GATEWAY_DISCOVERY must be kubernetes")
            self.expect(service == svc["metadata"]["name"], f"gateway watches Service {service!r}, the executors' Service is {svc['metadata']['name']!r}")
            self.expect(
                any(p.get("name") == port_name for p in svc["spec"]["ports"]),
                f"Service/executor has no port named {port_name!r} (GATEWAY_K8S_PORT_NAME)",
            )
            self.expect(svc["spec"].get("selector", {}).get("app.kubernetes.io/name") == "executor", "Service/executor must select the executor pods")
        # The HPA's custom metric must be one the adapter serves.
        values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
        served = {(r.get("name") or {}).get("as") for r in values["rules"]["custom"]}
        for hpa in of_kind(self.docs, "HorizontalPodAutoscaler"):
            for m in hpa["spec"].get("metrics") or []:
                if m.get("type") == "Pods":
                    name = m["pods"]["metric"]["name"]
                    self.expect(name in served, f"{ref(hpa)}: Pods metric {name} is not served by any rule in k8s/prometheus-adapter/values.yaml")
        for r in values["rules"]["custom"]:
            overrides = (r.get("resources") or {}).get("overrides") or {}
            self.expect(
                overrides.get("namespace", {}).get("resource") == "namespace" and overrides.get("pod", {}).get("resource") == "pod",
                "prometheus-adapter rule: `namespace` and `pod` labels must map to the namespace and pod resources (a Pods metric)",
            )

    # --- security ------------------------------------------------------------
    def security(self) -> None:
        ns = find(self.docs, "Namespace", contract()["namespace"])
        if ns is not None:
            labels = ns["metadata"].get("labels") or {}
            for mode in ("enforce", "warn", "audit"):
                self.expect(labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", f"{ref(ns)}: pod-security.kubernetes.io/{mode} must be restricted")
        for w in of_kind(self.docs, "Deployment"):
            name = w["metadata"]["name"]
            spec = pod_spec(w)
            psc = spec.get("securityContext") or {}
            self.expect(psc.get("runAsNonRoot") is True, f"{ref(w)}: pod runAsNonRoot")
            self.expect((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{ref(w)}: pod seccompProfile RuntimeDefault")
            if name == "executor":
                self.expect(spec.get("automountServiceAccountToken") is False, f"{ref(w)}: automountServiceAccountToken must be false")
                spread = spec.get("topologySpreadConstraints") or []
                self.expect(any(t.get("topologyKey") == "kubernetes.io/hostname" for t in spread), f"{ref(w)}: spread across nodes (topologyKey kubernetes.io/hostname)")
                pdbs = [p for p in of_kind(self.docs, "PodDisruptionBudget") if (p["spec"].get("selector") or {}).get("matchLabels") == w["spec"]["selector"]["matchLabels"]]
                self.expect(len(pdbs) == 1, f"{ref(w)}: exactly one PodDisruptionBudget must select it")
            for ctr in spec["containers"]:
                sc = ctr.get("securityContext") or {}
                where = f"{ref(w)} container {ctr['name']}"
                self.expect(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
                self.expect(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem true")
                self.expect(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot")
                self.expect((sc.get("capabilities") or {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities")
                self.expect(not sc.get("privileged"), f"{where}: not privileged")
                res = ctr.get("resources") or {}
                for kind in ("requests", "limits"):
                    for r in ("cpu", "memory", "ephemeral-storage"):
                        self.expect(r in (res.get(kind) or {}), f"{where}: resources.{kind}.{r}")
                self.expect((ctr.get("readinessProbe") or {}).get("httpGet", {}).get("path") == "/readyz", f"{where}: readiness on /readyz")
                self.expect((ctr.get("livenessProbe") or {}).get("httpGet", {}).get("path") == "/healthz", f"{where}: liveness on /healthz")
                self.expect("sleep" in ((ctr.get("lifecycle") or {}).get("preStop") or {}), f"{where}: a preStop sleep (no shell in the image)")
            # checkov skips must say why.
            for obj in (w, *of_kind(self.docs, "Service")):
                for key, value in (obj["metadata"].get("annotations") or {}).items():
                    if key.startswith("checkov.io/skip"):
                        parts = str(value).split("=")
                        self.expect(len(parts) == 2 and len(parts[1].strip()) >= 20, f"{ref(obj)}: {key} must be `CHECK_ID=<reason>` with a real reason (and no other '=')")
        # RBAC: the gateway reads EndpointSlices and nothing else.
        self.expect(not of_kind(self.docs, "ClusterRole") and not of_kind(self.docs, "ClusterRoleBinding"), "no cluster-wide RBAC")
        for role in of_kind(self.docs, "Role"):
            for rule in role.get("rules") or []:
                self.expect(
                    rule.get("apiGroups") == ["discovery.k8s.io"] and rule.get("resources") == ["endpointslices"]
                    and sorted(rule.get("verbs") or []) == ["get", "list", "watch"] and not rule.get("resourceNames"),
                    f"{ref(role)}: only get/list/watch on discovery.k8s.io endpointslices is allowed, got {rule}",
                )

    def network(self) -> None:
        pols = of_kind(self.docs, "NetworkPolicy")
        deny = [p for p in pols if p["spec"].get("podSelector") in ({}, None) and sorted(p["spec"].get("policyTypes") or []) == ["Egress", "Ingress"]
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        self.expect(len(deny) == 1, "a default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
        ex = find(self.docs, "Deployment", NO_EGRESS)
        if ex is None:
            return
        ex_labels = ex["spec"]["template"]["metadata"]["labels"]
        for p in pols:
            sel = (p["spec"].get("podSelector") or {}).get("matchLabels") or {}
            if not sel or any(ex_labels.get(k) != v for k, v in sel.items()):
                continue  # does not select executor pods (or is the default deny)
            self.expect(not p["spec"].get("egress"), f"{ref(p)}: selects executor pods and allows egress; executors may reach nothing")
            self.expect("Egress" in (p["spec"].get("policyTypes") or []), f"{ref(p)}: must list Egress in policyTypes")
            for rule in p["spec"].get("ingress") or []:
                self.expect(bool(rule.get("from")), f"{ref(p)}: an ingress rule without `from` admits everyone to the executors")
                for peer in rule.get("from") or []:
                    pod_sel = (peer.get("podSelector") or {}).get("matchLabels") or {}
                    ns_sel = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                    ok = (pod_sel == {"app.kubernetes.io/name": "gateway"} and not peer.get("namespaceSelector")) or (
                        ns_sel.get("kubernetes.io/metadata.name") == "monitoring" and pod_sel.get("app.kubernetes.io/name") == "prometheus"
                    )
                    self.expect(ok and "ipBlock" not in peer, f"{ref(p)}: executors admit only the gateway and Prometheus, not {peer}")
                for port in rule.get("ports") or []:
                    self.expect(port.get("port") in ("http", PORT), f"{ref(p)}: executors admit only their port, not {port}")

    def run(self) -> list[str]:
        for check in (self.autoscalers, self.executor_sizing, self.names, self.security, self.network):
            try:
                check()
            except (KeyError, IndexError, TypeError, ValueError) as e:
                self.fail(f"{check.__name__}: malformed manifests ({type(e).__name__}: {e})")
        return self.errors


def main() -> int:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    build_dir = pathlib.Path(sys.argv[1])
    failed = 0
    for target in sys.argv[2:]:
        errors = Rules(target, built(build_dir, target)).run()
        if errors:
            failed += 1
            print(f"FAIL {target}:")
            for e in errors:
                print(f"    {e}")
        else:
            print(f"ok   {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
