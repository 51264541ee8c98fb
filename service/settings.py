"""Service settings: one validated pydantic model, filled from `seq2seq serve` flags or SEQ2SEQ_* variables."""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seq2seq.config import Device, Precision, ReducedPrecision, format_validation_error
from seq2seq.errors import UserError

ENV_PREFIX = "SEQ2SEQ_"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, str] = Field(default_factory=dict,
                                   description="'src-tgt' → checkpoint path (paths joined by '+': an "
                                   "ensemble); env: 'de-en=/m/a.pt,en-fr=/m/b.pt'")
    checkpoints: list[str] = Field(default_factory=list, description="checkpoints served under their own "
                                   "language pair; env: '/m/a.pt,/m/b.pt'")
    models_dir: Optional[str] = Field(default=None, description="serve every *.pt in this folder (env for containers)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    device: Device = "auto"
    threads: Optional[int] = Field(default=None, gt=0, description="torch CPU threads of each decoder process; "
                                   "default the cores divided among the decoder processes")
    decoders: int = Field(default=1, ge=1, le=64, description="decoder processes, each with its own copy of the "
                          "models and its own batches: while one decodes, the next batch fills for another")
    precision: Optional[Precision] = Field(
        default=None, description="what decoding multiplies in, as `translate --precision`: fp32 (default), bf16 "
                                  "products (autocast), int8 dynamic quantization (CPU only)")
    quantize: Optional[ReducedPrecision] = Field(default=None, description="deprecated: the old name of "
                                                        "precision (SEQ2SEQ_QUANTIZE)")
    # Request limits: all visible in /openapi.json through the request schemas.
    max_texts: int = Field(default=64, gt=0, description="texts (strings) per request")
    max_sentences: int = Field(default=256, gt=0, description="sentences per request, counted after splitting "
                               "the texts into sentences")
    max_chars: int = Field(default=20_000, gt=0, description="characters per request, all texts together")
    max_beam_size: int = Field(default=10, gt=0)
    max_body_bytes: int = Field(default=1_000_000, gt=0, description="larger bodies get 413 before parsing")
    # Files (/translate_file): larger than requests, so their own limits.
    max_file_bytes: int = Field(default=10_000_000, gt=0, description="an uploaded file's size; larger: 413")
    max_file_chars: int = Field(default=100_000, gt=0, description="characters of text in one file")
    file_timeout_s: float = Field(default=300.0, gt=0, description="a file's translation must end within this")
    file_expiry_s: float = Field(default=1800.0, gt=0, description="a translated file is removed after this")
    files_dir: Optional[str] = Field(default=None, description="where translated files wait; default a new "
                                     "temporary folder")
    # Dynamic batching.
    batch_wait_ms: float = Field(default=5.0, ge=0, description="how long to gather concurrent requests")
    batch_max_tokens: int = Field(default=6000, gt=0, description="source tokens × beam size per decoding batch")
    queue_sentences: int = Field(default=4096, gt=0, description="sentences waiting at most; beyond, 503")
    request_timeout_s: float = Field(default=30.0, gt=0)
    body_timeout_s: float = Field(default=10.0, gt=0, description="a request body must arrive within this, else 408")
    # Access control, off by default.
    api_keys: list[str] = Field(default_factory=list, description="when set, every translation needs one")
    rate_limit_per_minute: Optional[int] = Field(default=None, gt=0, description="requests per key (or client)")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call the native API "
                                    "from a browser")
    libretranslate_cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="the same for the "
                                                   "LibreTranslate routes: open, as LibreTranslate is; '' closes")
    frontend_timeout_ms: int = Field(default=500, ge=0, description="what /frontend/settings tells a page to "
                                     "wait after a keystroke before it translates")
    graceful_shutdown_s: float = Field(default=20.0, ge=0)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value):
        if isinstance(value, str):
            return dict(_split_assignment(item) for item in value.split(",") if item.strip())
        return value

    @field_validator("checkpoints", "api_keys", "cors_origins", "libretranslate_cors_origins", mode="before")
    @classmethod
    def _parse_list(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _precision_from_the_old_name(self):
        if self.quantize is not None:
            if self.precision not in (None, self.quantize):
                raise ValueError(f"quantize ({self.quantize}) and precision ({self.precision}) disagree")
            logging.getLogger("seq2seq.service").warning("the setting 'quantize' is deprecated; use 'precision'")
            self.precision = self.quantize
        return self

    @property
    def reduced_precision(self) -> Optional[ReducedPrecision]:
        """'bf16' or 'int8', or None for fp32: what the decoder process is given."""
        if self.precision is None or self.precision == "fp32":
            return None
        return self.precision

    @model_validator(mode="after")
    def _queue_holds_a_whole_request(self):
        # A request is admitted whole, so a queue smaller than one request would refuse the largest forever.
        if self.queue_sentences < self.max_sentences:
            raise ValueError(f"queue_sentences ({self.queue_sentences}) must be at least max_sentences "
                             f"({self.max_sentences}): a request is queued whole")
        return self

    @property
    def threads_per_decoder(self) -> Optional[int]:
        """`threads` if set; with several decoders, the cores shared among them (torch's default takes all)."""
        if self.threads or self.decoders == 1:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.decoders)

    @property
    def max_file_sentences(self) -> int:
        """A file's sentences at most: what the queue holds (it is queued whole, as a request is)."""
        return self.queue_sentences


def _split_assignment(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"expected NAME=CHECKPOINT, got {item!r}")
    name, path = item.split("=", 1)
    return name.strip(), path.strip()


def settings_from(overrides: Mapping[str, object], environ: Mapping[str, str] = os.environ) -> ServiceSettings:
    """SEQ2SEQ_* environment variables, then explicit overrides (CLI flags) on top; validated."""
    raw: dict[str, object] = {}
    for name in ServiceSettings.model_fields:
        if ENV_PREFIX + name.upper() in environ:
            raw[name] = environ[ENV_PREFIX + name.upper()]
    raw.update({k: v for k, v in overrides.items() if v not in (None, [], {})})
    try:
        return ServiceSettings.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"invalid service setting: {format_validation_error(err)}") from None
