"""hadolint finds nothing in either Dockerfile; every inline ignore says why."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.conftest import DOCKER_DIR, tool

DOCKERFILES = [DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile) -> None:
    linted = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert linted.stdout.strip() == ""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_ignore_is_justified(dockerfile) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            before = lines[number - 1] if number else ""
            assert before.startswith("#"), f"{dockerfile.name}:{number + 1}: say why above it"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_image_contract(dockerfile) -> None:
    """What docker/k8s and the README rely on."""
    text = dockerfile.read_text()
    assert text.startswith("#")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "ARG BASE_IMAGE=" in text
    assert text.count("\nFROM ") == 2, "a build stage and a final stage"
    final = text.rsplit("\nFROM ", 1)[1]
    assert "USER 10001:10001" in final
    assert 'CMD ["python", "-m", "service.api"]' in final
    assert "LUNGSEG_HOST=0.0.0.0" in final
    assert "LUNGSEG_AUTH" not in code, "the image must not switch authentication off"
    assert "HEALTHCHECK" in final
    assert "/healthz" in final
    assert 'VOLUME ["/app/var"]' in final
    assert "COPY models ./models" in final
    assert "pip install" not in final, "the final stage installs nothing with pip"
    for label in ("version", "source", "licenses", "title", "description"):
        assert f"org.opencontainers.image.{label}=" in final
    assert "COPY training" not in text
    assert "COPY export" not in text


def test_the_build_context_is_an_allowlist() -> None:
    """Only pyproject.toml, README.md, service/ and models/ reach the build (no .venv, .git,
    data, training/ or export/)."""
    rules = [
        line.strip()
        for line in (DOCKER_DIR.parent / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "service", "models"}
