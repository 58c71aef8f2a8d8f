"""Offline checks for the CRD kinds mkserve renders (Knative, Cloud Run, KServe, ServiceMonitor).

No CRD schema can be fetched offline, so each kind gets an allow-list written
from its project's documented fields, and unknown fields are errors:
- Knative Serving: the field masks / generated CRD of knative/serving
  (pkg/apis/serving/fieldmask.go, config/core/300-resources/service.yaml) and
  the webhook rules in pkg/apis/serving/k8s_validation.go and
  metadata_validation.go (one port named "", http1 or h2c; reserved ports
  8012/8013/8022/9090/9091; reserved env PORT/K_*; reserved mount paths incl.
  /tmp; no lifecycle or terminationGracePeriodSeconds; revision names prefixed
  with the Service name). Fields behind feature flags that are off by default
  (nodeSelector, pod securityContext, ...) are left out on purpose.
- Cloud Run: the Cloud Run service YAML reference (run/docs/reference/yaml/v1)
  and its health-check and GPU pages.
- KServe: ComponentExtensionSpec (kserve pkg/apis/serving/v1beta1/component.go)
  plus the inlined PodSpec for a custom predictor named kserve-container.
- ServiceMonitor: prometheus-operator's monitoring.coreos.com/v1 API reference.
Containers and volumes inside them are also checked against the official
strict Kubernetes JSON schemas that kubernetes-validate ships.
"""
from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
from kubernetes_validate import utils as kv_utils

K8S_VERSION = kubernetes_validate.latest_version()

# -- a tiny schema language: objects with allowed keys, lists, maps, leaf types --------------


@dataclass(frozen=True)
class Obj:
    fields: dict[str, Any]
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


@dataclass(frozen=True)
class Enum:
    values: tuple[Any, ...] = field(default=())

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Pattern:
    regex: str


ANY = object()
STR, INT, BOOL = str, int, bool
INT_OR_STR = (int, str)
DURATION = Pattern(r"^(\d+(ms|s|m|h|d|w|y))+$")  # Prometheus durations: 15s, 1m30s


def check(value: Any, schema: Any, path: str = "") -> list[str]:
    """Every way `value` departs from `schema`; unknown object keys are errors."""
    where = path or "<root>"
    if schema is ANY:
        return []
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        prefix = f"{path}." if path else ""
        errors = [f"{prefix}{key}: unknown field" for key in value if key not in schema.fields]
        errors += [f"{prefix}{key}: required" for key in schema.required if key not in value]
        for key, sub in value.items():
            if key in schema.fields:
                errors += check(sub, schema.fields[key], f"{path}.{key}" if path else key)
        return errors
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in check(item, schema.item,
                                                                  f"{path}[{i}]")]
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        return [e for k, v in value.items() for e in check(v, schema.value, f"{path}[{k}]")]
    if isinstance(schema, Enum):
        return [] if value in schema.values else [f"{where}: {value!r} not in {schema.values}"]
    if isinstance(schema, Pattern):
        ok = isinstance(value, str) and re.match(schema.regex, value)
        return [] if ok else [f"{where}: {value!r} does not match {schema.regex}"]
    types = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(value, bool) and bool not in types:
        return [f"{where}: expected {types}, got a boolean"]
    return [] if isinstance(value, types) else [f"{where}: expected {types}, got {value!r}"]


def k8s_fragment_errors(value: dict[str, Any], schema_file: str) -> list[str]:
    """Errors of a fragment (a Container, a Volume) against the official strict schema."""
    folder = f"v{K8S_VERSION}-local-strict"
    schema = kv_utils.schema_contents(f"kubernetes-json-schema/{folder}/{schema_file}",
                                      K8S_VERSION)
    definitions = kv_utils.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json",
                                           K8S_VERSION)
    registry = (referencing.Resource.from_contents(schema)
                @ (referencing.Resource.from_contents(definitions) @ referencing.Registry()))
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(value)]


# -- shared pieces ------------------------------------------------------------------------------

LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*"
                       r"[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
META = Obj({"name": STR, "namespace": STR, "labels": MapOf(STR), "annotations": MapOf(STR)},
           required=("name",))
TEMPLATE_META = Obj({"name": STR, "labels": MapOf(STR), "annotations": MapOf(STR)})
ENV = Obj({"name": STR, "value": STR, "valueFrom": ANY}, required=("name",))
HTTP_GET = Obj({"path": STR, "port": INT_OR_STR, "host": STR, "scheme": Enum("HTTP", "HTTPS"),
                "httpHeaders": ListOf(Obj({"name": STR, "value": STR}, ("name", "value")))})
PROBE = Obj({"httpGet": HTTP_GET, "tcpSocket": Obj({"port": INT_OR_STR, "host": STR}),
             "exec": Obj({"command": ListOf(STR)}), "grpc": Obj({"port": INT, "service": STR}),
             "initialDelaySeconds": INT, "timeoutSeconds": INT, "periodSeconds": INT,
             "successThreshold": INT, "failureThreshold": INT})
RESOURCES = Obj({"limits": MapOf(INT_OR_STR), "requests": MapOf(INT_OR_STR)})
TRAFFIC = Obj({"revisionName": STR, "configurationName": STR, "latestRevision": BOOL,
               "percent": INT, "tag": STR})


def label_errors(meta: dict[str, Any], where: str) -> list[str]:
    errors = []
    for key, value in (meta.get("labels") or {}).items():
        if not LABEL_KEY.match(key) or len(key.split("/")[-1]) > 63:
            errors.append(f"{where}.labels: bad key {key!r}")
        if not LABEL_VALUE.match(str(value)) or len(str(value)) > 63:
            errors.append(f"{where}.labels[{key}]: bad value {value!r}")
    return errors


# -- Knative Serving ------------------------------------------------------------------------

KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_RESERVED_PATHS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_AUTOSCALING_KEYS = {
    "class", "metric", "target", "target-utilization-percentage", "target-burst-capacity",
    "min-scale", "max-scale", "initial-scale", "activation-scale", "scale-down-delay",
    "window", "panic-window-percentage", "panic-threshold-percentage",
    "scale-to-zero-pod-retention-period"}
KNATIVE_SERVING_ANNOTATIONS = {"progress-deadline", "creator", "lastModifier",
                               "rollout-duration"}
KNATIVE_CONTAINER = Obj({
    "name": STR, "image": STR, "args": ListOf(STR), "command": ListOf(STR), "env": ListOf(ENV),
    "envFrom": ListOf(ANY), "workingDir": STR,
    "imagePullPolicy": Enum("Always", "IfNotPresent", "Never"),
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "ports": ListOf(Obj({"name": Enum("", "http1", "h2c"), "containerPort": INT,
                         "protocol": Enum("TCP")}, required=("containerPort",))),
    "resources": RESOURCES,
    "securityContext": Obj({
        "allowPrivilegeEscalation": BOOL, "privileged": Enum(False),
        "capabilities": Obj({"drop": ListOf(STR)}),  # add: behind a feature flag
        "readOnlyRootFilesystem": BOOL, "runAsGroup": INT, "runAsNonRoot": BOOL,
        "runAsUser": INT,
        "seccompProfile": Obj({"type": Enum("RuntimeDefault", "Localhost", "Unconfined"),
                               "localhostProfile": STR}, required=("type",))}),
    "terminationMessagePath": STR, "terminationMessagePolicy": STR,
    "volumeMounts": ListOf(Obj({"name": STR, "mountPath": STR, "readOnly": BOOL,
                                "subPath": STR}, required=("name", "mountPath"))),
}, required=("image",))
KNATIVE_VOLUME = Obj({"name": STR, "emptyDir": Obj({"medium": STR, "sizeLimit": INT_OR_STR}),
                      "configMap": ANY, "secret": ANY, "projected": ANY}, required=("name",))
KNATIVE_SERVICE = Obj({
    "apiVersion": Enum("serving.knative.dev/v1"), "kind": Enum("Service"), "metadata": META,
    "spec": Obj({
        "template": Obj({"metadata": TEMPLATE_META, "spec": Obj({
            "containerConcurrency": INT, "timeoutSeconds": INT,
            "responseStartTimeoutSeconds": INT, "idleTimeoutSeconds": INT,
            "serviceAccountName": STR, "containers": ListOf(KNATIVE_CONTAINER),
            "volumes": ListOf(KNATIVE_VOLUME), "imagePullSecrets": ListOf(ANY),
            "enableServiceLinks": BOOL, "automountServiceAccountToken": Enum(False),
        }, required=("containers",))}, required=("spec",)),
        "traffic": ListOf(TRAFFIC),
    }, required=("template",)),
}, required=("apiVersion", "kind", "metadata", "spec"))


def serverless_container_rules(container: dict[str, Any], volumes: list[dict[str, Any]],
                               where: str) -> list[str]:
    """What Knative's webhook refuses beyond unknown fields (also KServe Serverless mode)."""
    errors = []
    ports = container.get("ports") or []
    if len(ports) != 1:
        errors.append(f"{where}.ports: exactly one port, got {len(ports)}")
    for port in ports:
        if port.get("containerPort") in KNATIVE_RESERVED_PORTS:
            errors.append(f"{where}.ports: {port['containerPort']} is reserved by Knative")
    for env in container.get("env") or []:
        if env["name"] in KNATIVE_RESERVED_ENV:
            errors.append(f"{where}.env: {env['name']} is reserved")
    mounted = set()
    for mount in container.get("volumeMounts") or []:
        mounted.add(mount["name"])
        if posixpath.normpath(mount["mountPath"]) in KNATIVE_RESERVED_PATHS:
            errors.append(f"{where}.volumeMounts: {mount['mountPath']} is a reserved path")
    declared = {v["name"] for v in volumes}
    if mounted != declared:
        errors.append(f"{where}: volumes {sorted(declared)} vs mounts {sorted(mounted)}")
    readiness = container.get("readinessProbe") or {}
    if not readiness.get("periodSeconds") and (
            "failureThreshold" in readiness or "timeoutSeconds" in readiness):
        errors.append(f"{where}.readinessProbe: failureThreshold/timeoutSeconds are refused "
                      "when periodSeconds is 0 (Knative's aggressive probing)")
    errors += [f"{where}: {e}" for e in k8s_fragment_errors(_as_kubernetes(container),
                                                            "container-v1.json")]
    return errors


def _as_kubernetes(container: dict[str, Any]) -> dict[str, Any]:
    """The container as Knative hands it to Kubernetes: it names an unnamed container and
    fills in the port of its probes (the Kubernetes schema requires both)."""
    result = copy.deepcopy(container)
    result.setdefault("name", "user-container")
    port = (container.get("ports") or [{}])[0].get("containerPort", 8080)
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = result.get(kind) or {}
        if "httpGet" in probe:
            probe["httpGet"].setdefault("port", port)
    return result


def annotation_rules(annotations: dict[str, str], where: str, template: bool) -> list[str]:
    errors = []
    for key in annotations:
        group, _, name = key.partition("/")
        if group == "autoscaling.knative.dev":
            if not template:
                errors.append(f"{where}: {key} works only on spec.template.metadata")
            elif name not in KNATIVE_AUTOSCALING_KEYS:
                errors.append(f"{where}: unknown autoscaling annotation {key}")
        if group == "serving.knative.dev" and name not in KNATIVE_SERVING_ANNOTATIONS:
            errors.append(f"{where}: {key} is not an allowed serving.knative.dev annotation")
    return errors


def traffic_rules(service: dict[str, Any]) -> list[str]:
    traffic = service["spec"].get("traffic")
    if not traffic:
        return []
    errors = []
    if sum(t.get("percent", 0) for t in traffic) != 100:
        errors.append("spec.traffic: percents must add up to 100")
    tags = [t["tag"] for t in traffic if "tag" in t]
    if len(tags) != len(set(tags)):
        errors.append("spec.traffic: tags must be unique")
    for i, target in enumerate(traffic):
        named = "revisionName" in target
        if named == bool(target.get("latestRevision")):
            errors.append(f"spec.traffic[{i}]: needs revisionName or latestRevision: true")
        if named and not DNS_LABEL.match(target["revisionName"]):
            errors.append(f"spec.traffic[{i}]: bad revisionName {target['revisionName']!r}")
        if "tag" in target and not DNS_LABEL.match(target["tag"]):
            errors.append(f"spec.traffic[{i}]: bad tag {target['tag']!r}")
    return errors


def knative_errors(service: dict[str, Any]) -> list[str]:
    errors = check(service, KNATIVE_SERVICE)
    if errors:
        return errors
    name = service["metadata"]["name"]
    if not DNS_LABEL.match(name) or len(name) > 63:
        errors.append(f"metadata.name {name!r}: not a DNS-1035 label")
    template = service["spec"]["template"]
    revision = template.get("metadata", {}).get("name")
    if revision is not None and not revision.startswith(name + "-"):
        errors.append(f"spec.template.metadata.name must have prefix {name + '-'!r}")
    errors += label_errors(service["metadata"], "metadata")
    errors += label_errors(template.get("metadata", {}), "spec.template.metadata")
    for meta, where in ((service["metadata"], "metadata"),
                        (template.get("metadata", {}), "spec.template.metadata")):
        for key in meta.get("labels") or {}:
            if key.startswith("serving.knative.dev/"):
                errors.append(f"{where}.labels: {key} is reserved for Knative")
    errors += annotation_rules(service["metadata"].get("annotations") or {}, "metadata", False)
    errors += annotation_rules(template.get("metadata", {}).get("annotations") or {},
                               "spec.template.metadata", True)
    spec = template["spec"]
    if len(spec["containers"]) != 1:
        errors.append("spec.template.spec.containers: mkserve renders exactly one container")
    for container in spec["containers"]:
        errors += serverless_container_rules(container, spec.get("volumes") or [],
                                             "spec.template.spec.containers[0]")
    if spec.get("timeoutSeconds", 0) > 600:
        errors.append("timeoutSeconds above Knative's default max-revision-timeout-seconds")
    if spec.get("containerConcurrency", 0) > 1000:
        errors.append("containerConcurrency above container-concurrency-max-limit (1000)")
    return errors + traffic_rules(service)


# -- Cloud Run ------------------------------------------------------------------------------

CLOUD_RUN_TEMPLATE_ANNOTATIONS = {
    "autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale",
    "run.googleapis.com/cpu-throttling", "run.googleapis.com/startup-cpu-boost",
    "run.googleapis.com/execution-environment", "run.googleapis.com/sessionAffinity",
    "run.googleapis.com/cloudsql-instances", "run.googleapis.com/vpc-access-connector",
    "run.googleapis.com/vpc-access-egress", "run.googleapis.com/network-interfaces",
    "run.googleapis.com/encryption-key", "run.googleapis.com/container-dependencies",
    "run.googleapis.com/gpu-zonal-redundancy-disabled"}
CLOUD_RUN_SERVICE_ANNOTATIONS = {
    "run.googleapis.com/launch-stage", "run.googleapis.com/description",
    "run.googleapis.com/ingress", "run.googleapis.com/binary-authorization",
    "run.googleapis.com/minScale", "run.googleapis.com/maxScale",
    "run.googleapis.com/invoker-iam-disabled"}
CLOUD_RUN_PROBE = Obj({"initialDelaySeconds": INT, "timeoutSeconds": INT, "periodSeconds": INT,
                       "failureThreshold": INT,
                       "httpGet": Obj({"path": STR, "port": INT, "httpHeaders": ListOf(ANY)}),
                       "tcpSocket": Obj({"port": INT}),
                       "grpc": Obj({"port": INT, "service": STR})})
CLOUD_RUN_CONTAINER = Obj({
    "name": STR, "image": STR, "command": ListOf(STR), "args": ListOf(STR), "env": ListOf(ENV),
    "ports": ListOf(Obj({"name": Enum("http1", "h2c"), "containerPort": INT})),
    "resources": Obj({"limits": MapOf(STR)}),
    "volumeMounts": ListOf(Obj({"name": STR, "mountPath": STR})), "workingDir": STR,
    "startupProbe": CLOUD_RUN_PROBE, "livenessProbe": CLOUD_RUN_PROBE,
}, required=("image",))
CLOUD_RUN_SERVICE = Obj({
    "apiVersion": Enum("serving.knative.dev/v1"), "kind": Enum("Service"), "metadata": META,
    "spec": Obj({
        "template": Obj({"metadata": TEMPLATE_META, "spec": Obj({
            "containerConcurrency": INT, "timeoutSeconds": INT, "serviceAccountName": STR,
            "containers": ListOf(CLOUD_RUN_CONTAINER), "volumes": ListOf(ANY),
            "nodeSelector": MapOf(STR)}, required=("containers",))}, required=("spec",)),
        "traffic": ListOf(TRAFFIC),
    }, required=("template",)),
}, required=("apiVersion", "kind", "metadata", "spec"))


def cloudrun_errors(service: dict[str, Any]) -> list[str]:
    errors = check(service, CLOUD_RUN_SERVICE)
    if errors:
        return errors
    for key in service["metadata"].get("annotations") or {}:
        if key not in CLOUD_RUN_SERVICE_ANNOTATIONS:
            errors.append(f"metadata.annotations: {key} is not a Cloud Run service annotation")
    template = service["spec"]["template"]
    annotations = template.get("metadata", {}).get("annotations") or {}
    for key in annotations:
        if key not in CLOUD_RUN_TEMPLATE_ANNOTATIONS:
            errors.append(f"spec.template.metadata.annotations: unknown {key}")
    if annotations.get("run.googleapis.com/execution-environment", "gen2") not in ("gen1",
                                                                                  "gen2"):
        errors.append("execution-environment must be gen1 or gen2")
    for key in ("run.googleapis.com/cpu-throttling", "run.googleapis.com/startup-cpu-boost"):
        if annotations.get(key, "true") not in ("true", "false"):
            errors.append(f"{key} must be \"true\" or \"false\"")
    spec = template["spec"]
    for key in spec.get("nodeSelector") or {}:
        if key != "run.googleapis.com/accelerator":
            errors.append(f"nodeSelector: Cloud Run knows only run.googleapis.com/accelerator, "
                          f"not {key}")
    if spec.get("timeoutSeconds", 300) > 3600:
        errors.append("timeoutSeconds above Cloud Run's 3600")
    if spec.get("containerConcurrency", 80) > 1000:
        errors.append("containerConcurrency above Cloud Run's 1000")
    containers = spec["containers"]
    if [len(c.get("ports") or []) for c in containers].count(1) != 1:
        errors.append("exactly one (ingress) container must have exactly one port")
    for container in containers:
        errors += _cloudrun_container_errors(container, spec, annotations)
    return errors


def _cloudrun_container_errors(container: dict[str, Any], spec: dict[str, Any],
                               annotations: dict[str, Any]) -> list[str]:
    errors = []
    for env in container.get("env") or []:
        if env["name"] in KNATIVE_RESERVED_ENV:
            errors.append(f"env {env['name']} is reserved by Cloud Run")
    for key in container.get("resources", {}).get("limits", {}):
        if key not in ("cpu", "memory", "nvidia.com/gpu"):
            errors.append(f"resources.limits: unknown resource {key}")
    for kind in ("startupProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe and probe.get("timeoutSeconds", 1) > probe.get("periodSeconds", 10):
            errors.append(f"{kind}: timeoutSeconds must not exceed periodSeconds")
        if probe and probe.get("periodSeconds", 10) > 240:
            errors.append(f"{kind}: periodSeconds above 240")
    gpu = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    if gpu is not None:
        if "run.googleapis.com/accelerator" not in (spec.get("nodeSelector") or {}):
            errors.append("a GPU limit needs nodeSelector run.googleapis.com/accelerator")
        if annotations.get("run.googleapis.com/cpu-throttling") != "false":
            errors.append("GPU services need run.googleapis.com/cpu-throttling: \"false\"")
        if str(gpu) != "1":
            errors.append("Cloud Run attaches one GPU per instance")
    return errors


# -- KServe ---------------------------------------------------------------------------------

COMPONENT_EXTENSION = {
    "minReplicas": INT, "maxReplicas": INT, "scaleTarget": INT,
    "scaleMetric": Enum("cpu", "memory", "concurrency", "rps"), "containerConcurrency": INT,
    "timeout": INT, "canaryTrafficPercent": INT, "logger": ANY, "batcher": ANY,
    "labels": MapOf(STR), "annotations": MapOf(STR), "deploymentStrategy": ANY}
POD_SPEC_SUBSET = {
    "containers": ListOf(ANY), "volumes": ListOf(ANY), "nodeSelector": MapOf(STR),
    "serviceAccountName": STR, "imagePullSecrets": ListOf(ANY), "tolerations": ListOf(ANY),
    "affinity": ANY, "securityContext": ANY}
KSERVE_ISVC = Obj({
    "apiVersion": Enum("serving.kserve.io/v1beta1"), "kind": Enum("InferenceService"),
    "metadata": META,
    "spec": Obj({"predictor": Obj({**COMPONENT_EXTENSION, **POD_SPEC_SUBSET},
                                  required=("containers",))}, required=("predictor",)),
}, required=("apiVersion", "kind", "metadata", "spec"))
KSERVE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def kserve_errors(isvc: dict[str, Any]) -> list[str]:
    errors = check(isvc, KSERVE_ISVC)
    if errors:
        return errors
    if not KSERVE_NAME.match(isvc["metadata"]["name"]):
        errors.append("metadata.name: InferenceService names are [a-z]([-a-z0-9]*[a-z0-9])?")
    errors += label_errors(isvc["metadata"], "metadata")
    predictor = isvc["spec"]["predictor"]
    errors += label_errors(predictor, "spec.predictor")
    errors += annotation_rules(predictor.get("annotations") or {}, "spec.predictor", True)
    names = [c.get("name") for c in predictor["containers"]]
    if names != ["kserve-container"]:
        errors.append(f"spec.predictor.containers: one container named kserve-container, "
                      f"got {names}")
    if predictor.get("minReplicas", 1) > predictor.get("maxReplicas", 1) > 0:
        errors.append("minReplicas above maxReplicas")
    for i, container in enumerate(predictor["containers"]):
        # Serverless (default) mode turns the predictor into a Knative Service.
        errors += serverless_container_rules(container, predictor.get("volumes") or [],
                                             f"spec.predictor.containers[{i}]")
    for i, volume in enumerate(predictor.get("volumes") or []):
        errors += [f"spec.predictor.volumes[{i}]: {e}"
                   for e in k8s_fragment_errors(volume, "volume-v1.json")]
    return errors


# -- prometheus-operator ServiceMonitor -----------------------------------------------------

SM_ENDPOINT = Obj({
    "port": STR, "targetPort": INT_OR_STR, "path": STR, "scheme": Enum("http", "https"),
    "params": MapOf(ListOf(STR)), "interval": DURATION, "scrapeTimeout": DURATION,
    "honorLabels": BOOL, "honorTimestamps": BOOL, "trackTimestampsStaleness": BOOL,
    "relabelings": ListOf(ANY), "metricRelabelings": ListOf(ANY), "tlsConfig": ANY,
    "authorization": ANY, "basicAuth": ANY, "oauth2": ANY, "bearerTokenSecret": ANY,
    "followRedirects": BOOL, "enableHttp2": BOOL, "proxyUrl": STR, "filterRunning": BOOL})
SERVICE_MONITOR = Obj({
    "apiVersion": Enum("monitoring.coreos.com/v1"), "kind": Enum("ServiceMonitor"),
    "metadata": META,
    "spec": Obj({
        "selector": Obj({"matchLabels": MapOf(STR), "matchExpressions": ListOf(ANY)}),
        "endpoints": ListOf(SM_ENDPOINT),
        "namespaceSelector": Obj({"any": BOOL, "matchNames": ListOf(STR)}),
        "jobLabel": STR, "targetLabels": ListOf(STR), "podTargetLabels": ListOf(STR),
        "sampleLimit": INT, "targetLimit": INT, "labelLimit": INT, "bodySizeLimit": STR,
        "attachMetadata": ANY, "scrapeProtocols": ListOf(STR), "scrapeClass": STR,
    }, required=("selector", "endpoints")),
}, required=("apiVersion", "kind", "metadata", "spec"))


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


def servicemonitor_errors(monitor: dict[str, Any]) -> list[str]:
    errors = check(monitor, SERVICE_MONITOR)
    if errors:
        return errors
    errors += label_errors(monitor["metadata"], "metadata")
    for i, endpoint in enumerate(monitor["spec"]["endpoints"]):
        if ("port" in endpoint) == ("targetPort" in endpoint):
            errors.append(f"spec.endpoints[{i}]: set port (a Service port name) or targetPort")
        if "interval" in endpoint and "scrapeTimeout" in endpoint and \
                _seconds(endpoint["scrapeTimeout"]) > _seconds(endpoint["interval"]):
            errors.append(f"spec.endpoints[{i}]: scrapeTimeout longer than interval")
    return errors


CRD_CHECKS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): kserve_errors,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): servicemonitor_errors,
}


# -- the checker checks: each rule must be able to fail ------------------------------------


def _knative_service() -> dict[str, Any]:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "m"},
            "spec": {"template": {"spec": {"containers": [
                {"image": "x:1", "ports": [{"containerPort": 8080}]}]}},
                "traffic": [{"latestRevision": True, "percent": 100}]}}


def test_minimal_knative_service_passes() -> None:
    assert knative_errors(_knative_service()) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30),
     "terminationGracePeriodSeconds: unknown field"),
    (lambda s: s["spec"]["template"]["spec"]["containers"][0].update(
        lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}), "lifecycle: unknown"),
    (lambda s: s["spec"]["template"]["spec"]["containers"][0]["ports"].append(
        {"containerPort": 9000}), "exactly one port"),
    (lambda s: s["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
        containerPort=9090), "reserved by Knative"),
    (lambda s: s["spec"]["template"]["spec"]["containers"][0].update(
        env=[{"name": "PORT", "value": "1"}]), "PORT is reserved"),
    (lambda s: (s["spec"]["template"]["spec"]["containers"][0].update(
        volumeMounts=[{"name": "t", "mountPath": "/tmp"}]),
        s["spec"]["template"]["spec"].update(volumes=[{"name": "t", "emptyDir": {}}])),
     "reserved path"),
    (lambda s: s["spec"].update(traffic=[{"latestRevision": True, "percent": 90}]),
     "add up to 100"),
    (lambda s: s["metadata"].update(annotations={"autoscaling.knative.dev/min-scale": "1"}),
     "only on spec.template"),
    (lambda s: s["spec"]["template"].update(metadata={"name": "other-v1"}), "must have prefix"),
    (lambda s: s["spec"]["template"]["spec"]["containers"][0].update(
        readinessProbe={"httpGet": {"path": "/"}, "failureThreshold": 3}), "aggressive"),
    (lambda s: s["spec"]["template"]["spec"].update(nodeSelector={"a": "b"}),
     "nodeSelector: unknown field"),
])
def test_knative_rules_reject(mutate: Any, expected: str) -> None:
    service = _knative_service()
    mutate(service)
    errors = knative_errors(service)
    assert any(expected in e for e in errors), errors


def test_type_and_required_checks() -> None:
    schema = Obj({"a": INT, "b": ListOf(STR)}, required=("a",))
    assert check({"a": 1, "b": ["x"]}, schema) == []
    assert check({"b": [1]}, schema) == ["a: required", "b[0]: expected (<class 'str'>,), got 1"]
    assert check({"a": True}, schema) == ["a: expected (<class 'int'>,), got a boolean"]


def test_servicemonitor_rules_reject() -> None:
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "m"},
               "spec": {"selector": {"matchLabels": {"a": "b"}},
                        "endpoints": [{"port": "http", "interval": "5s",
                                       "scrapeTimeout": "10s", "pth": "/metrics"}]}}
    assert any("pth: unknown field" in e for e in servicemonitor_errors(monitor))
    del monitor["spec"]["endpoints"][0]["pth"]
    assert any("scrapeTimeout longer" in e for e in servicemonitor_errors(monitor))


def test_kserve_needs_kserve_container() -> None:
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": {"containers": [
                {"name": "model", "image": "x:1", "ports": [{"containerPort": 8080}]}]}}}
    assert any("kserve-container" in e for e in kserve_errors(isvc))


def test_cloudrun_gpu_rules() -> None:
    service = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": {"name": "m"},
               "spec": {"template": {"spec": {"containers": [
                   {"image": "x:1", "ports": [{"name": "http1", "containerPort": 8080}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    errors = cloudrun_errors(service)
    assert any("accelerator" in e for e in errors) and any("cpu-throttling" in e
                                                           for e in errors)
