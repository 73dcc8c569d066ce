"""Service settings from the environment (prefix ``LUNGSEG_``), documented in the README."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from service.cpus import WorkerShare
from service.dicomweb import DicomwebConfig
from service.models.onnx_backend import DEFAULT_CUDA_OPTIONS
from service.models.segmenter import SegmenterConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob of the service; each field is ``LUNGSEG_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LUNGSEG_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=1, le=65535, description="port to bind")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_level: str = Field("info", description="logging level")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='browser origins allowed to call the API, JSON: ["https://pacs.example"]; '
        "none = CORS off",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as plain text or one JSON object per line"
    )
    auth: Literal["auto", "required", "none"] = Field(
        "auto",
        description="authentication: auto = on when API keys or OIDC are configured (without "
        "them only a loopback bind may start), required = refuse to start without them, "
        "none = off (explicit opt-out)",
    )
    api_keys_file: Path | None = Field(
        None,
        description="API keys, one client per line: <client-name> <sha256-hex-of-key> "
        "<scope>[,<scope>...]",
    )
    oidc_issuer: str | None = Field(None, description="OIDC: the tokens' `iss`")
    oidc_audience: str | None = Field(None, description="OIDC: the `aud` tokens must carry")
    oidc_jwks_url: str | None = Field(
        None, description="OIDC: the identity provider's JWKS (https; http only on loopback)"
    )
    oidc_jwks_file: Path | None = Field(
        None, description="OIDC: the signing keys as a JWKS file, instead of the URL"
    )
    oidc_leeway_s: float = Field(
        30.0, ge=0, le=300, description="OIDC: clock skew allowed on exp, nbf and iat (s)"
    )
    oidc_jwks_cache_s: float = Field(
        300.0, gt=0, description="OIDC: the signing keys are fetched again after this long (s)"
    )
    oidc_jwks_min_refresh_s: float = Field(
        10.0,
        ge=1,
        description="OIDC: at most one JWKS fetch per this many seconds (an unknown `kid` "
        "triggers one)",
    )
    metrics_auth: bool = Field(
        False, description="GET /metrics needs the scope metrics (or admin); off = open"
    )

    @field_validator(
        "api_keys_file",
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks_url",
        "oidc_jwks_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable (e.g. from an optional Kubernetes secret key) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    models_dir: Path = Field(REPO_ROOT / "models", description="folder of <name>/<version>/ models")
    default_model: str = Field(
        "unet", description="model kind used when a request names none (falls back if missing)"
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime execution provider: auto = CUDA when available"
    )
    precision: Literal["auto", "fp32", "int8", "fp16"] = Field(
        "auto",
        description="model variant: auto = int8 on CPU / fp16 on CUDA where the card accepts it",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads per inference; 0 = cores / max_in_flight"
    )
    batch_window_ms: float | None = Field(
        None,
        ge=0,
        description="micro-batching window per model (ms); 0 = off; unset = 2 ms on CUDA, "
        "off on the CPU",
    )
    max_batch: int = Field(32, ge=1, description="most images in one micro-batch / GPU run")
    cuda_options: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_CUDA_OPTIONS),
        description='CUDA execution provider options, JSON, e.g. {"cudnn_conv_algo_search": '
        '"HEURISTIC", "prefer_nhwc": "1"}',
    )
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="largest upload (bytes)")
    upload_timeout_s: float = Field(
        30.0, gt=0, description="an upload that sends no data for this long is refused (408)"
    )
    upload_min_bytes_per_s: float = Field(
        16384.0,
        ge=0,
        description="an upload slower than this on average (after 5 s) is refused (408); 0 = off",
    )
    upload_deadline_s: float = Field(
        600.0, ge=0, description="an upload not complete after this long is refused (408); 0 = off"
    )
    max_pixels: int = Field(
        80_000_000, ge=1, description="largest image, all frames (pixels), checked before decoding"
    )
    max_in_flight: int = Field(
        0,
        ge=0,
        description="concurrent inferences per worker; 0 = its cores (CPU), max_batch where "
        "micro-batching on a GPU",
    )
    max_queue: int = Field(
        0, ge=0, description="further requests a worker holds (waiting); 0 = 4 per core"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 when saturated")
    database_url: str = Field(
        f"sqlite:///{REPO_ROOT / 'var' / 'lungseg.db'}",
        description="SQLAlchemy URL of the job store (benchmark runs, volume jobs and their "
        "files; SQLite or PostgreSQL)",
    )
    job_queue: Literal["auto", "local", "postgres"] = Field(
        "auto",
        description="where background jobs run: postgres = a procrastinate queue in the "
        "PostgreSQL job store shared by every replica, local = in this worker only; auto = "
        "postgres when LUNGSEG_DATABASE_URL is PostgreSQL, else local",
    )
    job_heartbeat_s: float = Field(
        10.0, gt=0, description="a worker renews the lease of its jobs this often (s)"
    )
    job_lease_s: float = Field(
        60.0,
        gt=0,
        description="a job whose worker was silent this long lost it: queued again or "
        "interrupted (s); at least twice the heartbeat",
    )
    job_retries: int = Field(
        2,
        ge=0,
        description="shared queue: further runs of a travelling job whose replica died or "
        "stopped, then interrupted",
    )
    benchmark_sets: dict[str, Path] = Field(
        default_factory=dict,
        description='server-side labelled sets by name, JSON: {"gb": "/data/cxr-covid19-gb"}',
    )
    benchmark_sync_max_images: int = Field(
        40, ge=0, description="benchmarks of at most this many images answer 200 at once, else 202"
    )
    benchmark_chunk_images: int = Field(
        50, ge=1, description="images per chunk of a server-side set's benchmark (one job each)"
    )
    benchmark_max_zip_bytes: int = Field(512 * 1024 * 1024, ge=1, description="largest zip upload")
    benchmark_max_pending: int = Field(
        4, ge=1, description="benchmark runs a worker keeps queued or running; more get 503"
    )
    benchmark_max_unzipped_bytes: int = Field(
        2 * 1024 * 1024 * 1024, ge=1, description="largest total size once unzipped (zip bombs)"
    )
    benchmark_max_files: int = Field(100_000, ge=1, description="most entries in a zip upload")
    benchmark_disk_quota_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=1,
        description="most bytes of uploaded sets a worker keeps extracted at once; more: 503",
    )

    max_volume_pixels: int = Field(
        160_000_000,
        ge=1,
        description="largest volume (voxels of a series or NIfTI, ~610 slices of 512x512), "
        "checked before decoding; assembling holds ~1.5x its float32 voxels at the peak",
    )
    volume_max_upload_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1,
        description="largest volume upload (every file together, zips expanded) and largest "
        "series retrieved from the PACS (bytes); held in memory, never on disk",
    )
    volume_max_files: int = Field(
        10_000, ge=1, description="most files of one volume upload (parts and zip entries)"
    )
    volume_sync_max_slices: int = Field(
        0,
        ge=0,
        description="volume uploads of at most this many slices answer 200 with the result; "
        "larger ones (and every PACS pull) 202 + Location; 0 = always 202",
    )
    volume_max_pending: int = Field(
        2,
        ge=1,
        description="volume jobs a worker keeps queued or running (each holds its volume in "
        "memory until it is segmented); one more is refused with 503",
    )
    result_ttl_s: float = Field(
        3600.0,
        gt=0,
        description="volume jobs, their results and files are deleted this long after they "
        "ended (or were created, while unfinished)",
    )
    dicomweb_url: str | None = Field(
        None,
        description="the PACS's DICOMweb root (http(s), no credentials in it), e.g. "
        "http://pacs:8042/dicom-web; unset = no PACS pull or push",
    )
    dicomweb_username: str | None = Field(None, description="PACS: HTTP basic user name")
    dicomweb_password: SecretStr | None = Field(None, description="PACS: HTTP basic password")
    dicomweb_token: SecretStr | None = Field(
        None, description="PACS: a bearer token instead of basic credentials"
    )
    dicomweb_store: bool = Field(
        False,
        description="send the DICOM SEG of every volume back to the PACS (STOW-RS) unless "
        "the request says store=false",
    )
    dicomweb_connect_timeout_s: float = Field(
        5.0, gt=0, description="PACS: seconds to open a connection"
    )
    dicomweb_timeout_s: float = Field(
        30.0, gt=0, description="PACS: an answer that sends nothing for this long is abandoned"
    )
    dicomweb_deadline_s: float = Field(
        300.0, gt=0, description="PACS: most seconds for one call, retries included"
    )
    dicomweb_retries: int = Field(
        3, ge=0, description="PACS: further attempts after a retryable failure (backoff)"
    )

    @field_validator(
        "dicomweb_url", "dicomweb_username", "dicomweb_password", "dicomweb_token", mode="before"
    )
    @classmethod
    def _blank_pacs_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> Settings:
        if self.job_lease_s < 2 * self.job_heartbeat_s:
            raise ValueError("LUNGSEG_JOB_LEASE_S must be at least twice LUNGSEG_JOB_HEARTBEAT_S")
        return self

    def shared_queue(self) -> bool:
        """Whether jobs go through the shared PostgreSQL queue (``job_queue``).

        Raises:
            ValueError: ``postgres`` asked for a store that is not PostgreSQL.
        """
        postgres = make_url(self.database_url).get_backend_name() == "postgresql"
        if self.job_queue == "postgres" and not postgres:
            raise ValueError("LUNGSEG_JOB_QUEUE=postgres needs a PostgreSQL LUNGSEG_DATABASE_URL")
        return self.job_queue == "postgres" or (self.job_queue == "auto" and postgres)

    @property
    def share(self) -> WorkerShare:
        """One worker's cores (the machine's affinity, capped by a cgroup CPU quota, shared by
        the workers), in-flight inferences, queue and threads per inference."""
        return WorkerShare.of(
            self.workers, self.max_in_flight, self.max_queue, self.intra_op_threads
        )

    @property
    def cores(self) -> int:
        return self.share.cores

    @property
    def in_flight_limit(self) -> int:
        return self.share.in_flight

    @property
    def queue_limit(self) -> int:
        return self.share.queue

    @property
    def threads_per_inference(self) -> int:
        return self.share.threads_per_inference

    def segmenter_config(self) -> SegmenterConfig:
        """The ``Segmenter`` a worker runs with these settings."""
        return SegmenterConfig(
            models_dir=self.models_dir,
            providers=self.providers,
            precision=self.precision,
            intra_op_threads=self.threads_per_inference,
            max_pixels=self.max_pixels,
            max_volume_pixels=self.max_volume_pixels,
            batch_window_ms=self.batch_window_ms,
            max_batch=self.max_batch,
            max_inferences=self.in_flight_limit,
            cpu_stages=self.cores,
            cuda_options=self.cuda_options,
            default_kind=self.default_model,
        )

    def dicomweb_config(self) -> DicomwebConfig | None:
        """The PACS's DICOMweb settings, None without ``dicomweb_url``; a retrieved series is
        bounded as an upload is (``volume_max_upload_bytes``, ``volume_max_files``).

        Raises:
            ValueError: credentials in the URL, both basic credentials and a token, a user
                name without a password (or the reverse), a URL that is not http(s).
        """
        if self.dicomweb_url is None:
            return None
        password, token = self.dicomweb_password, self.dicomweb_token
        return DicomwebConfig(
            base_url=self.dicomweb_url,
            username=self.dicomweb_username,
            password=password.get_secret_value() if password is not None else None,
            bearer_token=token.get_secret_value() if token is not None else None,
            connect_timeout_s=self.dicomweb_connect_timeout_s,
            idle_timeout_s=self.dicomweb_timeout_s,
            deadline_s=self.dicomweb_deadline_s,
            max_bytes=self.volume_max_upload_bytes,
            max_instances=self.volume_max_files,
            retries=self.dicomweb_retries,
        )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment (tests override the dependency)."""
    return Settings()
