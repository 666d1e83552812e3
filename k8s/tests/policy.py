#!/usr/bin/env python3
"""The rules runbox's manifests must keep that no schema or scanner knows:
one autoscaler per Deployment, numbers that must agree across objects (CPU
request and concurrency, HPA and KEDA targets, drain times and grace
periods), the names the gateway and Prometheus depend on, the two ports
(API on `http`, /metrics alone on `metrics`) and who may reach each — the
Services, the NetworkPolicies and every scrape route (pod annotations, the
ServiceMonitors built to BUILD_DIR/monitoring.yaml, the plain scrape
config) — and the security settings each pod must carry. Run on each built
overlay.

Usage: policy.py BUILD_DIR TARGET…   (TARGET: an overlay built to BUILD_DIR/TARGET.yaml)
       policy.py --self-test BUILD_DIR TARGET
Prints one line per target; exits 1 if any rule is broken. --self-test
breaks TARGET in each way the port and scrape rules exist to
catch — the public Service exposing 9090, the monitoring namespace reaching
an API port, a scrape target on an API port, … — and prints one line per
mutation: ok when the rules caught it.
"""

from __future__ import annotations

import copy
import pathlib
import re
import sys
from typing import Any, Callable

import yaml

from manifests import (
    ADAPTER_VALUES,
    API_PORT,
    API_PORT_NAME,
    METRICS_PORT,
    METRICS_PORT_NAME,
    MONITORING_NAMESPACE,
    PROMETHEUS_POD,
    PUBLIC_SERVICE,
    ROOT,
    SCRAPE_CONFIG,
    binary_of,
    built,
    container_ports,
    contract,
    env_value,
    find,
    matches,
    of_kind,
    pod_spec,
    quantity,
    ref,
    resolve_port,
    template_labels,
)

# The executor's defaults (executor/src/config.rs), for variables a manifest
# leaves unset.
EXECUTOR_DEFAULTS = {"EXECUTOR_MAX_TIMEOUT_MS": "30000", "EXECUTOR_QUEUE_TIMEOUT_MS": "10000"}
# The adapter's name for rate(executor_busy_seconds_total[1m]) / executor_concurrency_limit.
AUTOSCALED_BY_CUSTOM_METRIC = "executor_utilisation"
BUSY_SECONDS = "executor_busy_seconds_total"
SLOTS = "executor_concurrency_limit"
# The utilisation target per pod (a fraction of the slots, whatever
# EXECUTOR_CONCURRENCY is): scale out before the queue fills.
UTILISATION_TARGET = (0.6, 0.8)
NO_EGRESS = "executor"  # the workload that may send nothing at all
PUBLIC_WORKLOAD = "gateway"  # the only workload anyone may reach (its API port)
# The routes by which Prometheus finds the pods; each must reach both
# workloads, on their metrics port.
ROUTE_ANNOTATIONS = "pod annotations prometheus.io/*"
ROUTE_SERVICEMONITOR = "a ServiceMonitor (k8s/monitoring)"
ROUTE_SCRAPE_CONFIG = f"{SCRAPE_CONFIG.relative_to(ROOT)}"
ROUTES = (ROUTE_ANNOTATIONS, ROUTE_SERVICEMONITOR, ROUTE_SCRAPE_CONFIG)


def is_public(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec") or {}
    return (svc["metadata"]["name"] == PUBLIC_SERVICE or spec.get("type") in ("NodePort", "LoadBalancer")
            or bool(spec.get("externalIPs")))


def listen_port(value: str | None) -> tuple[str, int | None]:
    """`0.0.0.0:9090` -> ("0.0.0.0", 9090)."""
    host, _, port = (value or "").rpartition(":")
    return host, int(port) if port.isdigit() else None


class Rules:
    def __init__(self, target: str, docs: list[dict[str, Any]], monitoring: list[dict[str, Any]] | None = None,
                 scrape_config: dict[str, Any] | None = None) -> None:
        self.target = target
        self.docs = docs
        # The Prometheus-operator objects (k8s/monitoring, built separately)
        # and the plain scrape config, checked against this overlay's pods.
        self.monitoring = monitoring
        self.scrape_config = scrape_config
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
        # The autoscaling target: a utilisation of 0.6–0.8 per pod, the HPA's
        # averageValue and the KEDA threshold alike.
        lo, hi = UTILISATION_TARGET
        for hpa in of_kind(self.docs, "HorizontalPodAutoscaler"):
            for m in hpa["spec"].get("metrics") or []:
                if m.get("type") == "Pods":
                    self.expect(m["pods"]["metric"]["name"] == AUTOSCALED_BY_CUSTOM_METRIC, f"{ref(hpa)}: the Pods metric must be {AUTOSCALED_BY_CUSTOM_METRIC}, not {m['pods']['metric']['name']}")
                    target = m["pods"]["target"]
                    self.expect(target.get("type") == "AverageValue", f"{ref(hpa)}: the Pods metric target must be an AverageValue")
                    v = quantity(target.get("averageValue", 0))
                    self.expect(lo - 1e-9 <= v <= hi + 1e-9, f"{ref(hpa)}: utilisation target {v} per pod is not within {lo}–{hi}")
        for so in of_kind(self.docs, "ScaledObject"):
            for t in so["spec"]["triggers"]:
                if t["type"] == "prometheus":
                    self.expect(t.get("metricType", "AverageValue") == "AverageValue", f"{ref(so)}: the prometheus trigger must use metricType AverageValue (per-pod target)")
                    v = float(t["metadata"]["threshold"])
                    self.expect(lo - 1e-9 <= v <= hi + 1e-9, f"{ref(so)}: utilisation threshold {v} per pod is not within {lo}–{hi}")
                    q = t["metadata"]["query"]
                    self.expect(
                        q.lstrip().startswith("sum(") and f"rate({BUSY_SECONDS}" in q and SLOTS in q,
                        f"{ref(so)}: the query must be the sum over pods of rate({BUSY_SECONDS}[…]) / {SLOTS} (KEDA divides by the replicas)",
                    )
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
                self.expect(ports.get(API_PORT_NAME) == API_PORT, f"{ref(w)}: container port `{API_PORT_NAME}` must be {API_PORT} (contract; the gateway finds executors by this name)")
                self.expect(ports.get(METRICS_PORT_NAME) == METRICS_PORT, f"{ref(w)}: container port `{METRICS_PORT_NAME}` must be {METRICS_PORT} (the metrics listener Prometheus scrapes)")
                self.expect(set(ports) <= {API_PORT_NAME, METRICS_PORT_NAME}, f"{ref(w)}: container ports {sorted(map(str, ports))}; only `{API_PORT_NAME}` and `{METRICS_PORT_NAME}`")
                # Each port is the listener its variable opens, on every
                # interface of the pod (127.0.0.1 would be unreachable).
                prefix = binary_of(ctr["image"]).upper()
                for var, port_name in ((f"{prefix}_LISTEN", API_PORT_NAME), (f"{prefix}_METRICS_LISTEN", METRICS_PORT_NAME)):
                    host, port = listen_port(env_value(ctr, var))
                    self.expect(
                        host in ("0.0.0.0", "[::]") and port is not None and port == ports.get(port_name),
                        f"{ref(w)}: {var} must be 0.0.0.0:<container port `{port_name}`> ({ports.get(port_name)}), not {env_value(ctr, var)!r}",
                    )
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
            if (r.get("name") or {}).get("as") == AUTOSCALED_BY_CUSTOM_METRIC:
                self.expect(
                    BUSY_SECONDS in r.get("seriesQuery", "") and "rate(<<.Series>>" in r.get("metricsQuery", "") and SLOTS in r.get("metricsQuery", ""),
                    f"prometheus-adapter rule {AUTOSCALED_BY_CUSTOM_METRIC}: must be rate({BUSY_SECONDS}[…]) / {SLOTS}",
                )
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
                named = {p["name"]: p["containerPort"] for p in ctr.get("ports") or [] if p.get("name")}
                for probe in ("readinessProbe", "livenessProbe"):
                    port = (ctr.get(probe) or {}).get("httpGet", {}).get("port")
                    self.expect(resolve_port(port, named) == API_PORT, f"{where}: {probe} on the API port (`{API_PORT_NAME}`), not {port!r}")
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

    # --- the two ports: Services ----------------------------------------------
    def backends(self, selector: dict[str, str] | None) -> list[dict[str, Any]]:
        """The Deployments whose pods a Service selector (plain labels) selects."""
        if not selector:
            return []
        return [w for w in of_kind(self.docs, "Deployment") if matches({"matchLabels": selector}, template_labels(w))]

    def service_targets(self, svc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any], int | None]]:
        """(service port, backend Deployment, container port number) for each
        port of a Service and each Deployment it selects."""
        out = []
        for w in self.backends((svc.get("spec") or {}).get("selector")):
            named = container_ports(w)
            for sp in svc["spec"].get("ports") or []:
                out.append((sp, w, resolve_port(sp.get("targetPort", sp.get("port")), named)))
        return out

    def services(self) -> None:
        metrics_services: dict[str, list[str]] = {}
        for svc in of_kind(self.docs, "Service"):
            spec = svc["spec"]
            targets = self.service_targets(svc)
            self.expect(bool(targets) or not spec.get("selector"), f"{ref(svc)} selects no Deployment's pods")
            for sp, w, port in targets:
                self.expect(port is not None, f"{ref(svc)}: port {sp.get('name')!r} targets {sp.get('targetPort')!r}, which {ref(w)}'s pods do not have")
            metrics = [(sp, w) for sp, w, port in targets if port == METRICS_PORT or sp.get("port") == METRICS_PORT or sp.get("name") == METRICS_PORT_NAME]
            if is_public(svc):
                self.expect(not metrics, f"{ref(svc)} is public and exposes the metrics port {METRICS_PORT}: nobody may reach /metrics through it")
                for sp, w, port in targets:
                    self.expect(port == API_PORT, f"{ref(svc)} is public: it may expose only {ref(w)}'s API port (`{API_PORT_NAME}`, {API_PORT}), not {sp}")
            elif metrics:
                # Prometheus's own way to the pods: no virtual IP, nothing but
                # the metrics port (and so never the gateway's discovery Service).
                self.expect(spec.get("clusterIP") == "None" and spec.get("type", "ClusterIP") == "ClusterIP",
                            f"{ref(svc)} exposes the metrics port: it must be a headless ClusterIP Service (clusterIP: None)")
                for sp, w, port in targets:
                    self.expect(port == METRICS_PORT and sp.get("name") == METRICS_PORT_NAME,
                                f"{ref(svc)} exposes the metrics port, so nothing else: port `{METRICS_PORT_NAME}` -> {METRICS_PORT} only, not {sp}")
                for w in {w["metadata"]["name"] for _, w in metrics}:
                    metrics_services.setdefault(w, []).append(ref(svc))
        for w in of_kind(self.docs, "Deployment"):
            found = metrics_services.get(w["metadata"]["name"], [])
            self.expect(len(found) == 1, f"{ref(w)}: exactly one headless Service must expose its metrics port (the ServiceMonitor's way in), found {found}")

    # --- the two ports: scrape routes ----------------------------------------
    def scrape_target(self, w: dict[str, Any], port: int | None, via: str) -> None:
        named = container_ports(w)
        want = named.get(METRICS_PORT_NAME)
        api = " — the API port, which answers 404 on /metrics" if port is not None and port == named.get(API_PORT_NAME) else ""
        self.expect(want is not None and port == want, f"{via} scrapes {ref(w)} on port {port}{api}; scrape only its metrics port (`{METRICS_PORT_NAME}`, {want})")

    def scrape(self) -> None:
        deployments = {w["metadata"]["name"]: w for w in of_kind(self.docs, "Deployment")}
        routes: dict[str, set[str]] = {name: set() for name in deployments}

        # 1. Pod annotations (the prometheus chart's kubernetes-pods job).
        for name, w in deployments.items():
            ann = w["spec"]["template"].get("metadata", {}).get("annotations") or {}
            if ann.get("prometheus.io/scrape") != "true":
                continue
            self.scrape_target(w, resolve_port(ann.get("prometheus.io/port"), {}), f"{ref(w)} annotation prometheus.io/port={ann.get('prometheus.io/port')!r}")
            self.expect(ann.get("prometheus.io/path", "/metrics") == "/metrics", f"{ref(w)}: prometheus.io/path must be /metrics")
            routes[name].add(ROUTE_ANNOTATIONS)

        # 2. ServiceMonitors: endpoint port (a Service port name) -> Service
        #    targetPort -> container port.
        if self.expect(self.monitoring is not None, "no built k8s/monitoring (monitoring.yaml) to check the ServiceMonitors"):
            for sm in of_kind(self.monitoring or [], "ServiceMonitor"):
                spec = sm.get("spec") or {}
                ns_sel = spec.get("namespaceSelector") or {}
                namespaces = ns_sel.get("matchNames") or ([] if ns_sel.get("any") else [sm["metadata"].get("namespace")])
                selected = [svc for svc in of_kind(self.docs, "Service") if matches(spec.get("selector"), svc["metadata"].get("labels") or {})
                            and (ns_sel.get("any") or svc["metadata"].get("namespace") in namespaces)]
                self.expect(bool(selected), f"{ref(sm)} selects no Service of this overlay")
                for svc in selected:
                    self.expect(not is_public(svc), f"{ref(sm)} scrapes through the public {ref(svc)}; use the headless metrics Service")
                    for i, ep in enumerate(spec.get("endpoints") or []):
                        via = f"{ref(sm)} endpoints[{i}] (through {ref(svc)})"
                        self.expect(ep.get("path", "/metrics") == "/metrics", f"{via}: path must be /metrics")
                        if "port" in ep:
                            # Services without a port of that name give no target.
                            for sp, w, port in self.service_targets(svc):
                                if sp.get("name") == ep["port"]:
                                    self.scrape_target(w, port, via)
                                    routes[w["metadata"]["name"]].add(ROUTE_SERVICEMONITOR)
                        elif "targetPort" in ep:
                            for w in self.backends(svc["spec"].get("selector")):
                                self.scrape_target(w, resolve_port(ep["targetPort"], container_ports(w)), via)
                                routes[w["metadata"]["name"]].add(ROUTE_SERVICEMONITOR)
                        else:
                            self.fail(f"{via} names no port: the operator would scrape every port of the Service")

        # 3. The plain scrape config: keep rules on the pod's name label and
        #    on the container port's name or number (anchored regexes).
        for job in (self.scrape_config or {}).get("scrape_configs") or []:
            via = f"{ROUTE_SCRAPE_CONFIG}: job {job.get('job_name')}"
            self.expect(job.get("metrics_path", "/metrics") == "/metrics", f"{via}: metrics_path must be /metrics")
            keep = [r for r in job.get("relabel_configs") or [] if r.get("action") == "keep"]

            def regexes(label: str) -> list[str]:
                return [str(r.get("regex", "(.*)")) for r in keep if r.get("source_labels") == [label]]

            names = regexes("__meta_kubernetes_pod_label_app_kubernetes_io_name")
            port_names = regexes("__meta_kubernetes_pod_container_port_name")
            port_numbers = regexes("__meta_kubernetes_pod_container_port_number")
            self.expect(bool(port_names or port_numbers), f"{via} keeps every container port; keep only `{METRICS_PORT_NAME}`")
            for name, w in deployments.items():
                if not all(re.fullmatch(r, name) for r in names):
                    continue
                kept = [(pn, num) for pn, num in container_ports(w).items()
                        if all(re.fullmatch(r, pn) for r in port_names) and all(re.fullmatch(r, str(num)) for r in port_numbers)]
                self.expect(bool(kept), f"{via} selects {ref(w)} but keeps none of its ports")
                for pn, num in kept:
                    self.scrape_target(w, num, f"{via} (container port `{pn}`)")
                routes[name].add(ROUTE_SCRAPE_CONFIG)

        for name, got in routes.items():
            missing = [r for r in ROUTES if r not in got]
            self.expect(not missing, f"{ref(deployments[name])}: not scraped through {', '.join(missing)}")

    # --- the two ports: NetworkPolicies ----------------------------------------
    def network(self) -> None:
        pols = of_kind(self.docs, "NetworkPolicy")
        deny = [p for p in pols if p["spec"].get("podSelector") in ({}, None) and sorted(p["spec"].get("policyTypes") or []) == ["Egress", "Ingress"]
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        self.expect(len(deny) == 1, "a default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
        deployments = of_kind(self.docs, "Deployment")
        monitoring_ns = {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}

        def prometheus(peer: dict[str, Any]) -> bool:
            return ("ipBlock" not in peer and (peer.get("namespaceSelector") or None) == {"matchLabels": monitoring_ns}
                    and (peer.get("podSelector") or None) == {"matchLabels": PROMETHEUS_POD})

        def gateway(peer: dict[str, Any]) -> bool:
            return set(peer) == {"podSelector"} and peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": PUBLIC_WORKLOAD}}

        def may_be_monitoring(peer: dict[str, Any]) -> bool:
            if "ipBlock" in peer:
                return True  # a CIDR can cover Prometheus's pod address
            if "namespaceSelector" not in peer:
                return False  # a podSelector alone: this namespace only
            ns = peer["namespaceSelector"] or {}
            names_it = "kubernetes.io/metadata.name" in (ns.get("matchLabels") or {}) or any(
                e.get("key") == "kubernetes.io/metadata.name" for e in ns.get("matchExpressions") or [])
            # Selected by its name label, or by labels it may well carry.
            return matches(ns, monitoring_ns) if names_it else True

        def admitted(ports: list[dict[str, Any]] | None, named: dict[str, int], where: str) -> set[int] | None:
            """The port numbers a rule's `ports` admit; None: every port."""
            if not ports:
                return None
            out: set[int] = set()
            for port in ports:
                if port.get("port") is None:
                    return None
                n = resolve_port(port["port"], named)
                if not self.expect(n is not None, f"{where}: port {port['port']!r} is none of the pods' ports {sorted(named)}"):
                    continue
                out |= set(range(n, int(port.get("endPort", n)) + 1))
            return out

        def show(ports: set[int] | None) -> str:
            if ports is None:
                return "every port"
            if len(ports) > 4 and max(ports) - min(ports) + 1 == len(ports):
                return f"port(s) [{min(ports)}-{max(ports)}]"
            return f"port(s) {sorted(ports)}"

        public_api_open = False
        scrapable: set[str] = set()  # workloads Prometheus may reach on their metrics port
        for p in pols:
            spec = p["spec"]
            for w in deployments:
                if not matches(spec.get("podSelector"), template_labels(w)):
                    continue
                name, named = w["metadata"]["name"], container_ports(w)
                api, metrics = named.get(API_PORT_NAME), named.get(METRICS_PORT_NAME)
                if name == NO_EGRESS:
                    self.expect(not spec.get("egress"), f"{ref(p)}: selects executor pods and allows egress; executors may reach nothing")
                    self.expect("Egress" in (spec.get("policyTypes") or []), f"{ref(p)}: must list Egress in policyTypes")
                for i, rule in enumerate(spec.get("ingress") or []):
                    where = f"{ref(p)} ingress[{i}] on {ref(w)}"
                    ports = admitted(rule.get("ports"), named, where)
                    peers = rule.get("from") or []
                    if not peers:
                        # Open to everyone: the public gateway's API port only.
                        self.expect(name == PUBLIC_WORKLOAD, f"{where}: an ingress rule without `from` admits everyone to {ref(w)}")
                        self.expect(ports is not None and ports <= {api}, f"{where}: open to everyone, so it may admit only the API port {api}, not {show(ports)}")
                        public_api_open |= name == PUBLIC_WORKLOAD and ports is not None and api in ports
                        continue
                    # The metrics port: Prometheus only.
                    if metrics is not None and (ports is None or metrics in ports):
                        if any(prometheus(x) for x in peers):
                            scrapable.add(name)
                        self.expect(all(prometheus(x) for x in peers),
                                    f"{where}: admits {[x for x in peers if not prometheus(x)]} to the metrics port {metrics}; only Prometheus (namespace {MONITORING_NAMESPACE}, {PROMETHEUS_POD}) may reach it")
                    # The monitoring namespace: the metrics port only.
                    if any(may_be_monitoring(x) for x in peers):
                        self.expect(ports is not None and ports <= {metrics},
                                    f"{where}: lets the monitoring namespace reach {show(ports if ports is None else ports - {metrics})}; it may reach only the metrics port {metrics}")
                    if name == NO_EGRESS:
                        for x in peers:
                            self.expect(gateway(x) or prometheus(x), f"{ref(p)}: executors admit only the gateway and Prometheus, not {x}")
                        # The API port: the gateway only (its limits stand between clients and executors).
                        if ports is None or api in ports:
                            self.expect(all(gateway(x) for x in peers), f"{where}: admits {[x for x in peers if not gateway(x)]} to the executors' API port {api}; only the gateway may reach it")
                        self.expect(ports is not None and ports <= {api, metrics}, f"{where}: executors admit only their API and metrics ports, not {show(ports)}")
                # Egress to the executors: their API port, never their metrics port.
                for i, rule in enumerate(spec.get("egress") or []):
                    for peer in rule.get("to") or []:
                        if "namespaceSelector" in peer or "ipBlock" in peer:
                            continue
                        for ex in deployments:
                            if ex["metadata"]["name"] == NO_EGRESS and matches(peer.get("podSelector"), template_labels(ex)):
                                ex_named = container_ports(ex)
                                ports = admitted(rule.get("ports"), ex_named, f"{ref(p)} egress[{i}]")
                                self.expect(ports is not None and ports <= {ex_named.get(API_PORT_NAME)},
                                            f"{ref(p)} egress[{i}]: {ref(w)} may reach {show(ports)} of {ref(ex)}; only its API port {ex_named.get(API_PORT_NAME)}")
        if find(self.docs, "Deployment", PUBLIC_WORKLOAD) is not None:
            self.expect(public_api_open, f"Deployment/{PUBLIC_WORKLOAD}: no NetworkPolicy admits clients to its API port (`{API_PORT_NAME}`)")
        for w in deployments:
            if METRICS_PORT_NAME in container_ports(w):
                self.expect(w["metadata"]["name"] in scrapable,
                            f"{ref(w)}: no NetworkPolicy admits Prometheus (namespace {MONITORING_NAMESPACE}, {PROMETHEUS_POD}) to its metrics port; nothing could scrape it")

    def run(self) -> list[str]:
        for check in (self.autoscalers, self.executor_sizing, self.names, self.security, self.services, self.scrape, self.network):
            try:
                check()
            except (KeyError, IndexError, TypeError, ValueError, re.error) as e:
                self.fail(f"{check.__name__}: malformed manifests ({type(e).__name__}: {e})")
        return self.errors


# --- self-test: each way the port rules exist to catch ----------------------

Docs = list[dict[str, Any]]


def _obj(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    if found is None:
        raise SystemExit(f"self-test: no {kind}/{name} to break")
    return found


def _ingress_from_monitoring(docs: Docs, policy: str) -> dict[str, Any]:
    for rule in _obj(docs, "NetworkPolicy", policy)["spec"]["ingress"]:
        if any((peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == MONITORING_NAMESPACE
               for peer in rule.get("from") or []):
            return rule
    raise SystemExit(f"self-test: NetworkPolicy/{policy} has no rule for the monitoring namespace")


def _ingress_rule(docs: Docs, policy: str, open_: bool) -> dict[str, Any]:
    for rule in _obj(docs, "NetworkPolicy", policy)["spec"]["ingress"]:
        if bool(rule.get("from")) != open_:
            return rule
    raise SystemExit(f"self-test: NetworkPolicy/{policy} has no {'open' if open_ else 'restricted'} ingress rule")


def _annotations(docs: Docs, name: str) -> dict[str, str]:
    return _obj(docs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]


def _env(docs: Docs, name: str, var: str, value: str) -> None:
    for e in pod_spec(_obj(docs, "Deployment", name))["containers"][0]["env"]:
        if e["name"] == var:
            e["value"] = value
            return
    raise SystemExit(f"self-test: Deployment/{name} does not set {var}")


def _sm_endpoint(monitoring: Docs, name: str) -> dict[str, Any]:
    return _obj(monitoring, "ServiceMonitor", name)["spec"]["endpoints"][0]


def _sm_on_api_service(monitoring: Docs, name: str) -> None:
    sm = _obj(monitoring, "ServiceMonitor", name)
    sm["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": name, "app.kubernetes.io/component": name}}
    sm["spec"]["endpoints"][0]["port"] = API_PORT_NAME


def _scrape_keep_port(config: dict[str, Any], job: str, regex: str) -> None:
    for j in config["scrape_configs"]:
        if j["job_name"] == job:
            for r in j["relabel_configs"]:
                if r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]:
                    r["regex"] = regex
                    return
    raise SystemExit(f"self-test: no port-name keep rule in scrape job {job}")


Mutation = Callable[[Docs, Docs, dict[str, Any]], None]
METRICS_SVC_PORT = {"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT_NAME, "protocol": "TCP"}
MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("the public Service exposes the metrics port by name",
     lambda d, m, c: _obj(d, "Service", PUBLIC_SERVICE)["spec"]["ports"].append(dict(METRICS_SVC_PORT)),
     "is public and exposes the metrics port"),
    ("the public Service exposes 9090 by number",
     lambda d, m, c: _obj(d, "Service", PUBLIC_SERVICE)["spec"]["ports"].append({"name": "x", "port": 9090, "targetPort": 9090, "protocol": "TCP"}),
     "is public and exposes the metrics port"),
    ("the executors' discovery Service exposes the metrics port",
     lambda d, m, c: _obj(d, "Service", "executor")["spec"]["ports"].append(dict(METRICS_SVC_PORT)),
     "must be a headless ClusterIP Service"),
    ("a metrics Service gets a virtual IP",
     lambda d, m, c: _obj(d, "Service", "gateway-metrics")["spec"].pop("clusterIP"),
     "must be a headless ClusterIP Service"),
    ("the monitoring namespace may reach the executors' API port",
     lambda d, m, c: _ingress_from_monitoring(d, "executor")["ports"].append({"port": API_PORT_NAME, "protocol": "TCP"}),
     "lets the monitoring namespace reach port(s) [8080]"),
    ("the monitoring namespace may reach every executor port",
     lambda d, m, c: _ingress_from_monitoring(d, "executor").pop("ports"),
     "lets the monitoring namespace reach every port"),
    ("the monitoring namespace may reach the gateway's API port (by number)",
     lambda d, m, c: _ingress_from_monitoring(d, "gateway")["ports"].__setitem__(0, {"port": 8080, "protocol": "TCP"}),
     "lets the monitoring namespace reach port(s) [8080]"),
    ("all namespaces (hence monitoring) may reach the executors' API port",
     lambda d, m, c: _ingress_rule(d, "executor", open_=False)["from"].append({"namespaceSelector": {}}),
     "lets the monitoring namespace reach port(s) [8080]"),
    ("everyone may reach the gateway's metrics port",
     lambda d, m, c: _ingress_rule(d, "gateway", open_=True)["ports"].append({"port": METRICS_PORT_NAME, "protocol": "TCP"}),
     "open to everyone, so it may admit only the API port"),
    ("the gateway may reach the executors' metrics port",
     lambda d, m, c: _ingress_rule(d, "executor", open_=False)["ports"].append({"port": METRICS_PORT, "protocol": "TCP"}),
     "only Prometheus"),
    ("Prometheus may reach the executors' API port through a port range",
     lambda d, m, c: _ingress_from_monitoring(d, "executor")["ports"].__setitem__(0, {"port": 8080, "endPort": 9090, "protocol": "TCP"}),
     "lets the monitoring namespace reach port(s) [8080"),
    ("Prometheus loses its way to the gateway's metrics port",
     lambda d, m, c: _obj(d, "NetworkPolicy", "gateway")["spec"]["ingress"].remove(_ingress_from_monitoring(d, "gateway")),
     "no NetworkPolicy admits Prometheus"),
    ("a pod annotation scrapes the executors' API port",
     lambda d, m, c: _annotations(d, "executor").__setitem__("prometheus.io/port", str(API_PORT)),
     "the API port, which answers 404 on /metrics"),
    ("a pod annotation scrapes the gateway's API port",
     lambda d, m, c: _annotations(d, "gateway").__setitem__("prometheus.io/port", str(API_PORT)),
     "the API port, which answers 404 on /metrics"),
    ("a ServiceMonitor scrapes the executors' API port through their Service",
     lambda d, m, c: _sm_on_api_service(m, "executor"),
     "the API port, which answers 404 on /metrics"),
    ("a ServiceMonitor scrapes the gateway through the public Service",
     lambda d, m, c: _sm_on_api_service(m, "gateway"),
     "scrapes through the public Service/gateway"),
    ("a ServiceMonitor endpoint targets the API port directly",
     lambda d, m, c: (_sm_endpoint(m, "gateway").pop("port"), _sm_endpoint(m, "gateway").__setitem__("targetPort", API_PORT_NAME)),
     "the API port, which answers 404 on /metrics"),
    ("the plain scrape config keeps the executors' API port",
     lambda d, m, c: _scrape_keep_port(c, "runbox-executor", API_PORT_NAME),
     "the API port, which answers 404 on /metrics"),
    ("the plain scrape config keeps every gateway port",
     lambda d, m, c: _scrape_keep_port(c, "runbox-gateway", ".*"),
     "the API port, which answers 404 on /metrics"),
    ("EXECUTOR_METRICS_LISTEN listens on the API port",
     lambda d, m, c: _env(d, "executor", "EXECUTOR_METRICS_LISTEN", f"0.0.0.0:{API_PORT}"),
     "EXECUTOR_METRICS_LISTEN must be 0.0.0.0:"),
    ("GATEWAY_METRICS_LISTEN listens on loopback only",
     lambda d, m, c: _env(d, "gateway", "GATEWAY_METRICS_LISTEN", f"127.0.0.1:{METRICS_PORT}"),
     "GATEWAY_METRICS_LISTEN must be 0.0.0.0:"),
    ("a probe moves to the metrics port",
     lambda d, m, c: pod_spec(_obj(d, "Deployment", "executor"))["containers"][0]["readinessProbe"]["httpGet"].__setitem__("port", METRICS_PORT_NAME),
     "readinessProbe on the API port"),
]


def self_test(build_dir: pathlib.Path, target: str) -> int:
    docs, monitoring, config = load_inputs(build_dir, target)
    failed = 0
    # Whatever TARGET already breaks (the plain policy run reports it) is
    # not credited to a mutation: each must cause an error of its own.
    baseline = set(Rules(target, copy.deepcopy(docs), copy.deepcopy(monitoring), copy.deepcopy(config)).run())
    for what, mutate, expect in MUTATIONS:
        d, m, c = copy.deepcopy(docs), copy.deepcopy(monitoring), copy.deepcopy(config)
        mutate(d, m or [], c or {})
        errors = [e for e in Rules(target, d, m, c).run() if e not in baseline]
        if any(expect in e for e in errors):
            print(f"ok   rejected: {what}")
        else:
            failed += 1
            print(f"FAIL not rejected: {what} (wanted an error containing {expect!r})")
            for e in errors:
                print(f"    {e}")
    return 1 if failed else 0


def load_inputs(build_dir: pathlib.Path, target: str) -> tuple[Docs, Docs | None, dict[str, Any] | None]:
    monitoring = built(build_dir, "monitoring") if (build_dir / "monitoring.yaml").is_file() else None
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8")) or {}
    return built(build_dir, target), monitoring, config


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--self-test":
        return self_test(pathlib.Path(sys.argv[2]), sys.argv[3])
    if len(sys.argv) < 3 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    build_dir = pathlib.Path(sys.argv[1])
    failed = 0
    for target in sys.argv[2:]:
        errors = Rules(target, *load_inputs(build_dir, target)).run()
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
