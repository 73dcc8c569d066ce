"""API keys, scopes, the open routes, /metrics, secure-by-default start-up and the key CLI."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from service.api.auth import ApiKeys, AuthConfigError, Authenticator, is_loopback, new_key
from service.api.auth.__main__ import main as auth_cli
from service.api.deps import require
from service.api.errors import PROBLEM_JSON
from service.api.settings import REPO_ROOT, Settings
from tests.security.conftest import CLIENTS

PNG = REPO_ROOT / "tests" / "fixtures" / "cxr_covid_1902.png"
SETS = "/v1/benchmark/sets"  # benchmark scope; answers from the settings alone


def _whoami(app) -> None:
    """A test route that shows the principal the dependency put on request.state."""

    @app.get("/_whoami", dependencies=[Depends(require("segment"))])
    def whoami(request: Request) -> dict:
        who = request.state.principal
        return {"name": who.name, "method": who.method, "scopes": sorted(who.scopes)}


def _is_401(response, error: str | None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="lungseg"')
    if error:
        assert f'error="{error}"' in challenge
    else:
        assert "error=" not in challenge


# --- with authentication on (API keys) -------------------------------------------------------


def test_no_credential_is_401_with_a_bearer_challenge(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path))
    for method, path in [("GET", SETS), ("GET", "/v1/benchmark"), ("GET", "/v1/models")]:
        _is_401(client.request(method, path), error=None)
    _is_401(client.get(SETS, headers={"Authorization": "Basic dXNlcjpwYXNz"}), error=None)


def test_a_wrong_key_is_401_invalid_token(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path))
    wrong = keys_file.keys["research"][:-1] + "x"
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}):
        response = client.get(SETS, headers=headers)
        _is_401(response, error="invalid_token")
        assert wrong not in response.text


def test_the_right_key_passes_and_its_principal_is_on_request_state(make_app, keys_file):
    app = make_app(api_keys_file=keys_file.path)
    _whoami(app)
    client = TestClient(app)
    assert client.get(SETS, headers=keys_file.bearer("research")).json() == []
    who = client.get("/_whoami", headers=keys_file.bearer("viewer-app")).json()
    assert who == {"name": "viewer-app", "method": "api-key", "scopes": ["benchmark", "segment"]}


def test_x_api_key_header(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path))
    assert client.get(SETS, headers={"X-API-Key": keys_file.keys["research"]}).status_code == 200
    both = {**keys_file.bearer("research"), "X-API-Key": keys_file.keys["research"]}
    assert client.get(SETS, headers=both).status_code == 400


def test_a_key_for_another_scope_is_403(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path))
    response = client.get(SETS, headers=keys_file.bearer("pacs-bridge"))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="benchmark"' in response.headers["www-authenticate"]
    assert "benchmark" in response.json()["detail"]
    # segment routes: refused before admission and before the upload is read (else 415)
    text = {"Content-Type": "text/plain"}
    for path in ("/v1/segment", "/v1/render"):
        headers = {**text, **keys_file.bearer("research")}
        assert client.post(path, content=b"not an image", headers=headers).status_code == 403
        _is_401(client.post(path, content=b"not an image", headers=text), error=None)
    assert client.get("/metrics", headers=keys_file.bearer("pacs-bridge")).status_code == 200


def test_scopes_of_every_route(make_app, keys_file, data_dir):
    """segment: segment, render, models; benchmark: runs, history, models; admin: all."""
    with TestClient(make_app(api_keys_file=keys_file.path)) as client:
        image = {"files": {"file": ("x.png", PNG.read_bytes(), "image/png")}}
        for client_name, expected in [
            ("pacs-bridge", {"segment": 200, "render": 200, "models": 200, "bench": 403}),
            ("research", {"segment": 403, "render": 403, "models": 200, "bench": 200}),
            ("prometheus", {"segment": 403, "render": 403, "models": 403, "bench": 403}),
            ("ops", {"segment": 200, "render": 200, "models": 200, "bench": 200}),
        ]:
            headers = keys_file.bearer(client_name)
            got = {
                "segment": client.post("/v1/segment", headers=headers, **image).status_code,
                "render": client.post("/v1/render", headers=headers, **image).status_code,
                "models": client.get("/v1/models", headers=headers).status_code,
                "bench": client.get("/v1/benchmark/history", headers=headers).status_code,
            }
            assert got == expected, client_name


def test_health_readiness_pages_and_docs_are_open(make_app, keys_file):
    with TestClient(make_app(api_keys_file=keys_file.path)) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/viewer", "/dashboard"):
            assert client.get(path).status_code == 200, path
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/static/pages/common.js").status_code == 200


def test_metrics_closed_with_metrics_auth(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path, metrics_auth=True))
    _is_401(client.get("/metrics"), error=None)
    _is_401(client.get("/metrics", headers={"X-API-Key": "nope"}), error="invalid_token")
    assert client.get("/metrics", headers=keys_file.bearer("pacs-bridge")).status_code == 403
    for name in ("prometheus", "ops"):
        response = client.get("/metrics", headers=keys_file.bearer(name))
        assert response.status_code == 200
        assert "lungseg_" in response.text
    assert client.get("/healthz").status_code == 200


def test_metrics_auth_needs_authentication():
    with pytest.raises(AuthConfigError, match="LUNGSEG_METRICS_AUTH"):
        Authenticator.from_settings(Settings(host="127.0.0.1", metrics_auth=True))
    with pytest.raises(AuthConfigError, match="LUNGSEG_METRICS_AUTH"):
        Authenticator.from_settings(Settings(host="0.0.0.0", auth="none", metrics_auth=True))


# --- the keys file ---------------------------------------------------------------------------


def test_keys_file_comments_blank_lines_trailing_whitespace_and_crlf(keys_file):
    keys = ApiKeys.load(keys_file.path)
    assert [e.name for e in keys.entries] == list(CLIENTS)
    for name, key in keys_file.keys.items():
        entry = keys.match(key)
        assert entry is not None and entry.name == name
        assert keys.match(f"{key} ") is None  # the key is exact; headers strip their own blanks
    assert keys.match("") is None


def test_a_presented_key_with_surrounding_blanks_is_trimmed(make_app, keys_file):
    client = TestClient(make_app(api_keys_file=keys_file.path))
    key = keys_file.keys["research"]
    assert client.get(SETS, headers={"Authorization": f"Bearer   {key}  "}).status_code == 200


SECRET = "s3cr3t-" + "a" * 20


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"pacs {SECRET}", "2 fields"),
        (f"pacs {'0' * 64} segment {SECRET}", "4 fields"),
        (f"pacs {SECRET}{'0' * 40} segment", "64 hex digits"),
        (f"pacs {'0' * 63}g segment", "64 hex digits"),
        (f"pacs {'0' * 64} {SECRET}", "unknown scope"),
        (f"pacs {'0' * 64} segment,", "empty scope"),
        (f"{SECRET}/x {'0' * 64} segment", "client name"),
        (f"ops {'1' * 64} segment", "already on line 2"),
        (f"other {'2' * 64} segment", "same key hash as line 3"),
    ],
)
def test_a_malformed_line_names_its_number_never_its_content(tmp_path, line, reason):
    path = tmp_path / "keys"
    path.write_text(f"# header\nops {'1' * 64} admin\nwho {'2' * 64} segment\n\n{line}\n")
    with pytest.raises(AuthConfigError) as raised:
        ApiKeys.load(path)
    message = str(raised.value)
    assert "line 5" in message and reason in message
    assert SECRET not in message and line not in message


def test_a_missing_keys_file_refuses_to_start(tmp_path):
    with pytest.raises(AuthConfigError, match="No such file"):
        Authenticator.from_settings(Settings(api_keys_file=tmp_path / "absent"))


def test_every_entry_is_compared_whichever_matches(keys_file, monkeypatch):
    """Constant time: one compare_digest per entry for the first, the last and no match."""
    keys = ApiKeys.load(keys_file.path)
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    names = list(CLIENTS)
    for key in (keys_file.keys[names[0]], keys_file.keys[names[-1]], "not a key"):
        calls.clear()
        keys.match(key)
        assert len(calls) == len(keys.entries)


def test_new_key_cli_prints_the_key_once_and_a_line_that_matches_it():
    out = io.StringIO()
    with redirect_stdout(out):
        assert auth_cli(["new-key", "pacs-bridge", "segment,benchmark"]) == 0
    lines = out.getvalue().splitlines()
    key = lines[1].strip()
    entry_line = lines[-1]
    name, digest, scopes = entry_line.split()
    assert (name, scopes) == ("pacs-bridge", "segment,benchmark")
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert out.getvalue().count(key) == 1
    assert ApiKeys.parse([entry_line], "test").match(key).name == "pacs-bridge"
    assert new_key("a", "admin")[0] != new_key("a", "admin")[0]
    for bad in (["new-key", "bad name", "segment"], ["new-key", "x", "root"]):
        with pytest.raises(SystemExit) as raised:
            auth_cli(bad)
        assert raised.value.code == 2


# --- secure by default -----------------------------------------------------------------------


def test_loopback_without_configuration_is_open(make_app):
    app = make_app()
    _whoami(app)
    client = TestClient(app)
    assert client.get(SETS).status_code == 200
    assert client.get("/_whoami").json()["method"] == "none"
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("lungseg.example", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_modes(keys_file):
    def auth(**settings):
        return Authenticator.from_settings(Settings(**settings))

    assert not auth(host="127.0.0.1").enabled
    assert auth(host="0.0.0.0", api_keys_file=keys_file.path).enabled
    assert auth(host="127.0.0.1", api_keys_file=keys_file.path).enabled
    assert not auth(host="0.0.0.0", auth="none").enabled
    assert not auth(host="0.0.0.0", auth="none", api_keys_file=keys_file.path).enabled
    with pytest.raises(AuthConfigError, match="loopback"):
        auth(host="0.0.0.0")
    with pytest.raises(AuthConfigError, match="LUNGSEG_AUTH=required"):
        auth(host="127.0.0.1", auth="required")
    assert auth(host="127.0.0.1", auth="required", api_keys_file=keys_file.path).enabled
    assert Settings(api_keys_file="", oidc_issuer=" ").api_keys_file is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LUNGSEG_")}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "service.api"],
        env={**clean, "LUNGSEG_PORT": str(_free_port()), **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - start


def test_refuses_to_start_off_loopback_without_authentication():
    done, seconds = _serve({"LUNGSEG_HOST": "0.0.0.0"})
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and "LUNGSEG_AUTH=none" in done.stderr
    assert "Uvicorn running" not in done.stderr + done.stdout
    assert seconds < 30


def test_refuses_to_start_with_a_malformed_keys_file(tmp_path: Path):
    path = tmp_path / "keys"
    path.write_text(f"# keys\n\nleaky {SECRET} segment\n")
    done, _ = _serve({"LUNGSEG_HOST": "127.0.0.1", "LUNGSEG_API_KEYS_FILE": str(path)})
    assert done.returncode == 2, done.stderr
    assert "line 3" in done.stderr
    assert SECRET not in done.stderr + done.stdout and "leaky" not in done.stderr


# --- the OpenAPI document and the pages ------------------------------------------------------


def test_openapi_declares_the_schemes_and_the_protected_operations(make_app):
    doc = TestClient(make_app()).get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    protected = [
        ("/v1/segment", "post"),
        ("/v1/render", "post"),
        ("/v1/models", "get"),
        ("/v1/benchmark", "post"),
        ("/v1/benchmark", "get"),
        ("/v1/benchmark/history", "get"),
        ("/v1/benchmark/{run_id}", "get"),
    ]
    for path, method in protected:
        operation = doc["paths"][path][method]
        assert {"HTTPBearer": []} in operation["security"], path
        assert {"APIKeyHeader": []} in operation["security"], path
        assert {} not in operation["security"], path
        assert {"401", "403"} <= set(operation["responses"]), path
    assert {} in doc["paths"]["/metrics"]["get"]["security"]  # optional
    for path in ("/healthz", "/readyz"):
        assert "security" not in doc["paths"][path]["get"]
        assert "401" not in doc["paths"][path]["get"]["responses"]


def test_the_pages_send_the_key_as_a_header_from_session_storage():
    script = (REPO_ROOT / "service/api/static/pages/common.js").read_text()
    assert "sessionStorage" in script and "localStorage" not in script
    assert "Authorization" in script and "Bearer" in script
    for name in ("viewer.js", "dashboard.js"):
        page = (REPO_ROOT / "service/api/static/pages" / name).read_text()
        assert "fetch(" not in page.replace("apiFetch(", ""), f"{name} calls fetch directly"
