"""The Kubernetes manifests: each overlay of docker/k8s renders with ``kubectl kustomize``, every
document validates strictly against the schemas of the Kubernetes versions we support
(kubernetes-validate, offline), and the rendered pods keep the security and lifecycle settings
the image relies on. Skipped without kubectl unless ``LUNGSEG_REQUIRE_CONTAINER=1``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.api.settings import Settings
from tests.deploy.conftest import DOCKER_DIR, tool

OVERLAYS = ["cpu", "gpu"]
# Kubernetes minor versions validated against (all have autoscaling/v2, policy/v1 and the
# seccompProfile field); kubernetes-validate >= 1.37 ships their schemas.
VERSIONS = [f"1.{minor}.0" for minor in range(29, 38)]
USER_ID = 10001
KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}


def _render(overlay: str) -> str:
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(DOCKER_DIR / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("k8s")
    files = {}
    for overlay in OVERLAYS:
        files[overlay] = folder / f"{overlay}.yaml"
        files[overlay].write_text(_render(overlay))
    return files


def _docs(rendered: dict[str, Path], overlay: str) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(rendered[overlay].read_text()):
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _one(docs: dict[str, list[dict[str, Any]]], kind: str, name: str = "") -> dict[str, Any]:
    found = [doc for doc in docs[kind] if not name or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


def _container(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_validates_strictly(rendered: dict[str, Path], overlay: str, version: str) -> None:
    validated = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, rendered[overlay]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.strip() == ""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_has_every_resource(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    assert set(docs) == KINDS
    assert {doc["metadata"]["name"] for doc in docs["Secret"]} == {
        "lungseg-auth",
        "lungseg-database",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_security(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == USER_ID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = _container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == USER_ID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_and_secrets(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    container = _container(docs)
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes[mounts["/app/var"]["name"]]
    env = {item["name"]: item for item in container["env"]}
    keys_file = Path(env["LUNGSEG_API_KEYS_FILE"]["value"])
    keys_mount = mounts[str(keys_file.parent)]
    assert keys_mount["readOnly"] is True
    secret = volumes[keys_mount["name"]]["secret"]
    assert secret["secretName"] == "lungseg-auth"
    assert {item["path"] for item in secret["items"]} == {keys_file.name}
    database = env["LUNGSEG_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database["name"] == "lungseg-database"
    for name in ("LUNGSEG_OIDC_ISSUER", "LUNGSEG_OIDC_AUDIENCE", "LUNGSEG_OIDC_JWKS_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "lungseg-auth"
    # Placeholders only: a hash that no key has, a password to change.
    secrets = {doc["metadata"]["name"]: doc["stringData"] for doc in docs["Secret"]}
    for line in secrets["lungseg-auth"]["api-keys"].splitlines():
        _client, digest, scopes = line.split()
        assert digest == "0" * 64, "a real key hash in the manifests"
        assert set(scopes.split(",")) <= {"segment", "benchmark", "admin"}
    assert secrets["lungseg-database"]["url"].startswith("postgresql+psycopg://")
    assert "CHANGE-ME" in secrets["lungseg-database"]["url"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_graceful_shutdown(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    sleep_s = int(command[1])
    upload_timeout_s = float(_one(docs, "ConfigMap")["data"]["LUNGSEG_UPLOAD_TIMEOUT_S"])
    # The pod is dropped from the endpoints during the sleep, then gets SIGTERM and finishes
    # the requests it holds: the grace period covers both.
    assert pod["terminationGracePeriodSeconds"] > sleep_s + upload_timeout_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_match_the_workers(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    settings = _one(docs, "ConfigMap")["data"]
    workers = int(settings["LUNGSEG_WORKERS"])
    resources = _container(docs)["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: the cores are there"
    cpus = int(resources["limits"]["cpu"])  # whole cores: the service reads the cgroup quota
    assert cpus % workers == 0
    assert cpus // workers >= 1
    assert "LUNGSEG_AUTH" not in settings, "authentication must not be switched off"
    known = {f"LUNGSEG_{name.upper()}" for name in Settings.model_fields}
    assert set(settings) <= known, "settings the service does not read"
    if overlay == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert settings["LUNGSEG_PROVIDERS"] == "cuda"
        assert _container(docs)["image"].endswith(":gpu")
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert settings["LUNGSEG_PROVIDERS"] == "cpu"
        assert _container(docs)["image"].endswith(":cpu")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_and_disruptions(rendered: dict[str, Path], overlay: str) -> None:
    docs = _docs(rendered, overlay)
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == _one(docs, "Deployment")["metadata"]["name"]
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "lungseg_requests_in_flight"
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy(rendered: dict[str, Path], overlay: str) -> None:
    policy = _one(_docs(rendered, overlay), "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert ingress_ports == {8000}
    sources = [peer["namespaceSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    assert {"kubernetes.io/metadata.name": "monitoring"} in sources
    egress_ports = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    assert egress_ports == {53, 5432}, "out: DNS and PostgreSQL only"
