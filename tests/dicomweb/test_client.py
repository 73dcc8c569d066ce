"""The DICOMweb client without a PACS: httpx's MockTransport for statuses, retries and limits,
a loopback socket for refused connections and a PACS that stops sending."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from service.dicomweb import DicomwebClient, DicomwebConfig
from service.dicomweb.multipart import multipart_body
from service.errors import (
    InvalidParameterError,
    PacsError,
    PacsNotFoundError,
    PacsTooLargeError,
)
from tests.pacs import free_port

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
INSTANCES = [b"DICM-one" * 100, b"DICM-two" * 200, b"DICM-three" * 50]
BASE = "http://pacs.test/dicom-web"


def _client(
    handler: Callable[[httpx.Request], httpx.Response], **settings: object
) -> tuple[DicomwebClient, list[float]]:
    waits: list[float] = []
    values: dict[str, object] = {"base_url": BASE, "username": "u", "password": "p"}
    values.update(settings)
    config = DicomwebConfig(**values)  # type: ignore[arg-type]
    return DicomwebClient(config, transport=httpx.MockTransport(handler), sleep=waits.append), waits


def _multipart(parts: list[bytes], boundary: str = "bnd") -> httpx.Response:
    _, chunks = multipart_body(parts, boundary)
    return httpx.Response(
        200,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        content=b"".join(chunks),
    )


def _stream(parts: list[bytes], boundary: str = "bnd") -> httpx.Response:
    """The same without a Content-Length (streamed, chunked)."""
    _, chunks = multipart_body(parts, boundary)
    return httpx.Response(
        200,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        content=iter(list(chunks)),
    )


def test_config_checks_and_hides_secrets() -> None:
    config = DicomwebConfig(BASE, bearer_token="s3cret")
    assert "s3cret" not in repr(config) and "bearer" in repr(config)
    assert "pw" not in repr(DicomwebConfig(BASE, username="u", password="pw"))
    for bad in (
        {"base_url": "ftp://pacs"},
        {"base_url": "http://u:p@pacs/dicom-web"},
        {"base_url": BASE, "username": "u"},
        {"base_url": BASE, "username": "u", "password": "p", "bearer_token": "t"},
        {"base_url": BASE, "max_bytes": 0},
        {"base_url": BASE, "idle_timeout_s": 0},
    ):
        with pytest.raises(ValueError):
            DicomwebConfig(**bad)  # type: ignore[arg-type]


def test_retrieve_sends_credentials_and_parses_parts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _stream(INSTANCES)

    client, _ = _client(handler)
    assert client.retrieve_series(STUDY, SERIES) == INSTANCES
    request = seen[0]
    assert request.url.path == f"/dicom-web/studies/{STUDY}/series/{SERIES}"
    assert request.headers["authorization"].startswith("Basic ")
    assert 'type="application/dicom"' in request.headers["accept"]
    bearer, _ = _client(handler, username=None, password=None, bearer_token="tok")
    bearer.retrieve_series(STUDY, SERIES)
    assert seen[-1].headers["authorization"] == "Bearer tok"


def test_byte_and_instance_limits() -> None:
    total = sum(len(i) for i in INSTANCES)
    declared, _ = _client(lambda r: _multipart(INSTANCES), max_bytes=total // 2)
    with pytest.raises(PacsTooLargeError, match="announces"):
        declared.retrieve_series(STUDY, SERIES)
    streamed, _ = _client(lambda r: _stream(INSTANCES), max_bytes=total // 2)
    with pytest.raises(PacsTooLargeError, match="max_bytes"):
        streamed.retrieve_series(STUDY, SERIES)
    counted, waits = _client(lambda r: _stream(INSTANCES), max_instances=2)
    with pytest.raises(PacsTooLargeError, match="max_instances") as caught:
        counted.retrieve_series(STUDY, SERIES)
    assert caught.value.retryable is False and waits == []  # not retried


def test_idempotent_calls_retry_with_backoff() -> None:
    answers = iter([httpx.Response(503), httpx.Response(502), _stream(INSTANCES)])
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return next(answers)

    client, waits = _client(handler, backoff_s=0.25)
    assert client.retrieve_series(STUDY, SERIES) == INSTANCES
    assert waits == [0.25, 0.5] and len(calls) == 3


def test_retry_after_and_giving_up() -> None:
    client, waits = _client(
        lambda r: httpx.Response(503, headers={"Retry-After": "2"}), retries=2, max_backoff_s=5
    )
    with pytest.raises(PacsError, match="HTTP 503") as caught:
        client.find_series(STUDY)
    assert caught.value.retryable is True and caught.value.status == 503
    assert waits == [2.0, 2.0]


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, PacsError, False),
        (403, PacsError, False),
        (404, PacsNotFoundError, False),
        (400, PacsError, False),
    ],
)
def test_refusals_are_not_retried(status: int, kind: type[PacsError], retryable: bool) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status)

    client, waits = _client(handler)
    with pytest.raises(kind) as caught:
        client.retrieve_series(STUDY, SERIES)
    assert caught.value.status == status and caught.value.retryable is retryable
    assert len(calls) == 1 and waits == []


def test_find_series_parses_dicom_json() -> None:
    answer = [
        {
            "0020000E": {"vr": "UI", "Value": [SERIES]},
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "0008103E": {"vr": "LO", "Value": ["chest"]},
            "00200011": {"vr": "IS", "Value": [3]},
            "00201209": {"vr": "IS", "Value": [64]},
        },
        {"0020000E": {"vr": "UI", "Value": ["1.2.3"]}, "00080060": {"vr": "CS", "Value": ["SEG"]}},
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    client, _ = _client(handler)
    found = client.find_series(STUDY)
    assert [(s.series_uid, s.modality, s.instances) for s in found] == [
        (SERIES, "CT", 64),
        ("1.2.3", "SEG", None),
    ]
    assert found[0].description == "chest" and found[0].number == 3
    assert SERIES not in repr(found[0])
    assert seen[0].url.params.get_list("includefield") == ["0008103E", "00200011", "00201209"]
    empty, _ = _client(lambda r: httpx.Response(204))
    assert empty.find_series(STUDY) == []


def _stow_answer(stored: list[str], failed: list[tuple[str, int]]) -> dict[str, object]:
    return {
        "00081199": {
            "vr": "SQ",
            "Value": [{"00081155": {"vr": "UI", "Value": [u]}} for u in stored],
        },
        "00081198": {
            "vr": "SQ",
            "Value": [
                {"00081155": {"vr": "UI", "Value": [u]}, "00081197": {"vr": "US", "Value": [r]}}
                for u, r in failed
            ],
        },
    }


def test_store_receipt_and_body() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        assert request.headers["content-type"].startswith("multipart/related")
        assert int(request.headers["content-length"]) == len(bodies[-1])
        return httpx.Response(202, json=_stow_answer(["1.1", "1.2"], [("1.3", 0xA700)]))

    client, _ = _client(handler)
    receipt = client.store(INSTANCES)
    assert receipt.status == 202 and receipt.stored == ("1.1", "1.2")
    assert receipt.failed == (("1.3", 0xA700),) and not receipt.complete
    assert "1.1" not in repr(receipt)
    assert all(part in bodies[0] for part in INSTANCES)


def test_store_retries_only_when_the_pacs_says_so() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json=_stow_answer(["1.1"], []))])
    client, waits = _client(lambda r: next(answers))
    assert client.store(INSTANCES[:1]).complete and len(waits) == 1
    calls: list[int] = []

    def failing(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(500)

    client, waits = _client(failing)
    with pytest.raises(PacsError, match="HTTP 500"):
        client.store(INSTANCES)
    assert len(calls) == 1 and waits == []  # a 500 may have stored some: not repeated


def test_store_nothing_stored_raises() -> None:
    client, _ = _client(lambda r: httpx.Response(409, json=_stow_answer([], [("1.1", 0xC000)])))
    with pytest.raises(PacsError, match="stored none") as caught:
        client.store(INSTANCES[:1])
    assert caught.value.status == 409 and "0xC000" in str(caught.value)
    with pytest.raises(InvalidParameterError):
        client.store([])


def test_bad_uids_are_refused_before_any_request() -> None:
    client, _ = _client(lambda r: pytest.fail("no request expected"))
    for bad in ("", "1.2.x", "../studies", "1." + "2" * 70):
        with pytest.raises(InvalidParameterError):
            client.find_series(bad)


def test_connection_refused_is_retryable_and_retried() -> None:
    port = free_port()  # nothing listens there
    config = DicomwebConfig(f"http://127.0.0.1:{port}/dicom-web", retries=2, backoff_s=0.01)
    waits: list[float] = []
    with DicomwebClient(config, sleep=waits.append) as client:
        with pytest.raises(PacsError, match="could not be reached") as caught:
            client.find_series(STUDY)
        assert caught.value.retryable is True and caught.value.status is None
        assert waits == [0.01, 0.02]
        with pytest.raises(PacsError, match="could not be reached"):
            client.store(INSTANCES[:1])  # nothing was sent: retried too
        assert len(waits) == 4


@pytest.fixture
def stalling_pacs() -> Iterator[str]:
    """A loopback server that sends the headers and part of a multipart body, then stalls
    (at most 5 s) without closing."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/related; "
                b'type="application/dicom"; boundary=bnd\r\nContent-Length: 100000\r\n\r\n'
                b"--bnd\r\nContent-Type: application/dicom\r\n\r\nDICM"
            )
            connection.sendall(head)
            stop.wait(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web"
    stop.set()
    server.close()
    thread.join(timeout=10)


def test_a_pacs_that_stops_sending_times_out(stalling_pacs: str) -> None:
    config = DicomwebConfig(stalling_pacs, idle_timeout_s=0.3, retries=0)
    began = time.monotonic()
    with (
        DicomwebClient(config) as client,
        pytest.raises(PacsError, match="stopped sending") as caught,
    ):
        client.retrieve_series(STUDY, SERIES)
    assert caught.value.retryable is True
    assert time.monotonic() - began < 3


def test_no_uid_in_logs_or_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter([httpx.Response(503), _stream(INSTANCES)])
    client, _ = _client(lambda r: next(answers))
    client.retrieve_series(STUDY, SERIES)
    failing, _ = _client(lambda r: httpx.Response(404))
    with pytest.raises(PacsNotFoundError) as caught:
        failing.retrieve_series(STUDY, SERIES)
    text = caplog.text + str(caught.value)
    assert "WADO-RS" in caplog.text
    assert STUDY not in text and SERIES not in text
    assert json.dumps(STUDY) not in text
