"""The CPU image (``make image``) runs as a Kubernetes pod would run it, and serves.

podman runs it with runc, a read-only root file system, a tmpfs on /tmp, a volume on /app/var,
no capabilities, an API keys file mounted read-only and a random loopback port. The test waits
for /readyz, segments real DICOM files, checks the user, the file system and the HEALTHCHECK,
and stops the container (SIGTERM, a clean exit). ``make image-test`` builds the image first;
without podman or the image the tests are skipped, unless ``LUNGSEG_REQUIRE_CONTAINER=1``.

Clients send ``Authorization: Bearer <key>``: the service will require it on a non-loopback
address, so the tests pass whether or not it already does.
"""

from __future__ import annotations

import hashlib
import os
import resource
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import FIGURES, tool, unavailable

pytestmark = pytest.mark.container

IMAGE = os.environ.get("LUNGSEG_IMAGE", "localhost/lungseg:cpu")
USER_ID = 10001
KEYS_IN_CONTAINER = "/run/secrets/lungseg/api-keys"
READY_TIMEOUT_S = 120.0
# This VM refuses the rlimits podman sets by default (nofile 1048576, nproc 32768) inside a
# container: stay at or below the host's own.
ULIMIT = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


@dataclass
class Running:
    name: str
    url: str
    key: str
    startup_s: float


def _podman(
    *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("podman"), *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(name: str, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            if answer.status_code == 200 and answer.json()["status"] == "ok":
                return
        except httpx.HTTPError:
            pass
        state = _podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if state.stdout.strip() not in ("created", "running", "configured"):
            logs = _podman("logs", name, check=False)
            pytest.fail(f"the container stopped ({state.stdout.strip()}):\n{logs.stderr[-4000:]}")
        time.sleep(0.1)
    logs = _podman("logs", name, check=False)
    pytest.fail(f"not ready after {READY_TIMEOUT_S} s:\n{logs.stderr[-4000:]}")


@pytest.fixture(scope="module")
def image() -> str:
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        unavailable(f"image {IMAGE} not built (make image)")
    return IMAGE


@pytest.fixture(scope="module")
def container(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The image running read-only, as in docker/k8s; removed afterwards whatever happened."""
    key = secrets.token_urlsafe(32)
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"deploy-test {hashlib.sha256(key.encode()).hexdigest()} segment,benchmark\n")
    keys.chmod(0o644)
    name = f"lungseg-test-{uuid.uuid4().hex[:12]}"
    volume = f"{name}-var"
    port = _free_port()
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []  # crun fails on this VM
    _podman("volume", "create", volume)
    started = time.monotonic()
    try:
        _podman(
            "run",
            "--detach",
            "--name",
            name,
            *runtime,
            "--ulimit",
            f"nofile={ULIMIT}:{ULIMIT}",
            "--ulimit",
            f"nproc={ULIMIT}:{ULIMIT}",
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,size=512m",
            "--volume",
            f"{volume}:/app/var",
            "--volume",
            f"{keys}:{KEYS_IN_CONTAINER}:ro",
            "--env",
            f"LUNGSEG_API_KEYS_FILE={KEYS_IN_CONTAINER}",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            # Checked on demand below (podman's timer needs systemd, absent here).
            "--health-interval",
            "disable",
            "--publish",
            f"127.0.0.1:{port}:8000",
            image,
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(name, url)
        startup_s = time.monotonic() - started
        FIGURES["start-up (podman run to /readyz ok)"] = f"{startup_s:.1f} s"
        yield Running(name, url, key, startup_s)
    finally:
        _podman("rm", "--force", "--time", "10", name, check=False)
        _podman("volume", "rm", "--force", volume, check=False)


def _segment(running: Running, path: Path) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v1/segment",
        files={"file": (path.name, path.read_bytes(), "application/dicom")},
        headers={"Authorization": f"Bearer {running.key}"},
        timeout=120,
    )


def test_image_labels_size_and_healthcheck(image: str) -> None:
    inspected = _podman(
        "image",
        "inspect",
        "--format",
        "{{.Size}}|{{json .Labels}}|{{json .Config.Healthcheck}}|{{.Config.User}}",
        image,
    ).stdout.strip()
    size, labels, healthcheck, user = inspected.split("|", 3)
    FIGURES[f"image {image}"] = f"{int(size) / 2**20:.0f} MiB"
    for label in ("version", "source", "licenses", "title", "description"):
        assert f'"org.opencontainers.image.{label}"' in labels, label
    assert "/healthz" in healthcheck
    assert user.split(":")[0] == str(USER_ID)


@pytest.mark.parametrize(
    ("file", "modality"),
    [("ct-series-chest-hu/1-30.dcm", "ct"), ("dicom/RG1_UNCR.dcm", "cxr")],
)
def test_segments_a_real_dicom(
    container: Running, data_dir: Path, file: str, modality: str
) -> None:
    """A whole chest CT slice in HU and a clinical CR: lungs found (``CT_small.dcm``, a
    128x128 crop, is answered "no lung found: the model is unsure" by the 2.0.0 models)."""
    answer = _segment(container, data_dir / "files" / file)
    assert answer.status_code == 200, answer.text[:2000]
    body = answer.json()
    assert body["modality"] == modality
    assert body["model"]["provider"] == "CPUExecutionProvider"
    for label in ("lung", "infection"):
        mask = body["masks"][label]
        assert mask["size"] == [body["height"], body["width"]]
        assert isinstance(mask["counts"], str)
        assert mask["counts"]
    assert body["lung_found"] and body["lung_area_px"] > 0
    total = body["timings_ms"]["total"]
    FIGURES[f"{Path(file).name} (first request)"] = f"{total:.0f} ms in the service"


def test_a_request_without_the_key_is_served_or_refused(container: Running, data_dir: Path) -> None:
    """Today the key is not checked (200); once it is, a request without it gets 401/403."""
    path = data_dir / "files" / "dicom" / "CT_small.dcm"
    answer = httpx.post(
        f"{container.url}/v1/segment",
        files={"file": (path.name, path.read_bytes(), "application/dicom")},
        timeout=60,
    )
    assert answer.status_code in (200, 401, 403), answer.text[:2000]


def test_runs_as_the_unprivileged_user(container: Running) -> None:
    assert _podman("exec", container.name, "id", "-u").stdout.strip() == str(USER_ID)
    # The service itself (PID 1), not only what exec starts.
    status = _podman("exec", container.name, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(USER_ID)] * 4
    cmdline = _podman("exec", container.name, "cat", "/proc/1/cmdline").stdout
    assert cmdline.split("\0")[:3] == ["python", "-m", "service.api"]
    capabilities = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(capabilities.split()[1], 16) == 0


def test_only_tmp_and_the_store_are_writable(container: Running) -> None:
    for path in ("/probe", "/app/probe", "/app/models/probe", "/opt/lungseg/probe"):
        written = _podman("exec", container.name, "touch", path, check=False)
        assert written.returncode != 0, path
        assert "Read-only file system" in written.stderr, written.stderr
    for path in ("/tmp/probe", "/app/var/probe"):
        assert _podman("exec", container.name, "touch", path, check=False).returncode == 0, path
    # The benchmark store lives on the volume.
    answer = httpx.get(
        f"{container.url}/v1/benchmark",
        headers={"Authorization": f"Bearer {container.key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert _podman("exec", container.name, "test", "-f", "/app/var/lungseg.db").returncode == 0


def test_no_build_tools_in_the_image(container: Running) -> None:
    found = _podman(
        "exec", container.name, "sh", "-c", "command -v pip pip3 gcc cc make", check=False
    )
    assert found.stdout.strip() == ""
    assert _podman("exec", container.name, "python", "-c", "import pip", check=False).returncode


def test_has_the_postgresql_driver(container: Running) -> None:
    """docker/k8s points LUNGSEG_DATABASE_URL at PostgreSQL (postgresql+psycopg://)."""
    probe = "import sqlalchemy; sqlalchemy.create_engine('postgresql+psycopg://u:p@db/lungseg')"
    made = _podman("exec", container.name, "python", "-c", probe, check=False)
    assert made.returncode == 0, made.stderr


def test_healthcheck_passes(container: Running) -> None:
    checked = _podman("healthcheck", "run", container.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_stops_cleanly_on_sigterm(container: Running) -> None:
    """Last (the tests run in file order): SIGTERM, uvicorn finishes and exits 0 in time."""
    started = time.monotonic()
    _podman("stop", "--time", "30", container.name, timeout=60)
    assert time.monotonic() - started < 30, "not stopped by SIGTERM (killed after the timeout)"
    code = _podman("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout
    assert code.strip() == "0", _podman("logs", container.name, check=False).stderr[-4000:]
