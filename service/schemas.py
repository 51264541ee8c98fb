"""Request and response models of the native API. Limits come from the settings, so /openapi.json shows them."""
from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.settings import ServiceSettings


class Alternative(BaseModel):
    text: str
    score: float


class TranslationOut(BaseModel):
    text: str
    score: float = Field(description="log-probability divided by the length penalty")
    attention: Optional[list[list[float]]] = Field(
        default=None, description="rows: target pieces then </s>; columns: source pieces then </s>")
    source_pieces: Optional[list[str]] = None
    target_pieces: Optional[list[str]] = None
    alternatives: Optional[list[Alternative]] = None


class TranslateResponse(BaseModel):
    model: str
    source: str
    target: str
    translations: list[TranslationOut]
    elapsed_ms: float


def translate_request_model(settings: ServiceSettings) -> type[BaseModel]:
    """The POST /v1/translate body, with this deployment's limits."""
    Sentence = Annotated[str, StringConstraints(max_length=settings.max_chars)]
    Sentences = Annotated[list[Sentence], Field(min_length=1, max_length=settings.max_sentences)]

    class TranslateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"text": "Ein Hund läuft über die Wiese.", "source": "de", "target": "en", "beam_size": 5}]})

        text: Union[Sentence, Sentences] = Field(description="one sentence, or a list translated in order")
        source: Optional[str] = Field(default=None, max_length=16, description="optional when one model is served")
        target: Optional[str] = Field(default=None, max_length=16)
        beam_size: Optional[int] = Field(default=None, ge=1, le=settings.max_beam_size,
                                         description="1 is greedy; default: the model's")
        n_best: int = Field(default=1, ge=1, le=settings.max_beam_size, description="at most beam_size")
        length_penalty: Optional[float] = Field(default=None, ge=0, le=5)
        max_length_ratio: Optional[float] = Field(default=None, gt=0, le=10)
        return_attention: bool = False

    return TranslateRequest
