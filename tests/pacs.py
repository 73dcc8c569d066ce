"""A throw-away Orthanc PACS with the DICOMweb plugin for the tests (Debian's ``orthanc`` and
``orthanc-dicomweb`` packages).

``OrthancServer.start()`` writes a configuration into a new temporary folder (storage and index
there, HTTP on a free port, the DICOM protocol off, ``RemoteAccessAllowed`` false so that only
loopback clients are served, authentication on with one test user, the DICOMweb plugin from
its Debian path, no jobs saved), runs ``Orthanc <config>`` as a plain process and waits until
``/system`` answers. ``stop()`` ends it by its pid (SIGTERM, then SIGKILL) and removes the folder.

Install it with ``apt-get install orthanc orthanc-dicomweb`` (``.ci/run`` does, as root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

PLUGIN_PATHS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
USER = "lungseg-test"
START_TIMEOUT_S = 60.0


class OrthancUnavailable(RuntimeError):
    """No Orthanc binary or no DICOMweb plugin."""


def find_orthanc() -> tuple[str, str]:
    """(Orthanc binary, DICOMweb plugin) or OrthancUnavailable."""
    binary = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None
    )
    if binary is None:
        raise OrthancUnavailable("no Orthanc: apt-get install orthanc orthanc-dicomweb")
    plugin = next((p for p in PLUGIN_PATHS if os.path.exists(p)), None)
    if plugin is None:
        raise OrthancUnavailable("no Orthanc DICOMweb plugin: apt-get install orthanc-dicomweb")
    return binary, plugin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancServer:
    def __init__(self) -> None:
        self.binary, self.plugin = find_orthanc()
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.user = USER
        self.password = secrets.token_urlsafe(16)
        self.started_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> OrthancServer:
        began = time.monotonic()
        self.folder = Path(tempfile.mkdtemp(prefix="lungseg-orthanc-"))
        self.port = free_port()
        config = {
            "Name": "lungseg-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.port,
            "HttpServerEnabled": True,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "StorageCompression": False,
            "StableAge": 1,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        log = (self.folder / "orthanc.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, str(path)],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait(began)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - began
        return self

    def _wait(self, began: float) -> None:
        auth = (self.user, self.password)
        while time.monotonic() - began < START_TIMEOUT_S:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log()}")
            try:
                answer = httpx.get(f"{self.url}/system", auth=auth, timeout=2.0)
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S} s: {self.log()}")

    def log(self) -> str:
        if self.folder is None or not (self.folder / "orthanc.log").exists():
            return ""
        return (self.folder / "orthanc.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
