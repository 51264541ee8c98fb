"""Request and response models of the native API. Limits come from the settings, so /openapi.json shows them."""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.settings import ServiceSettings


class Alternative(BaseModel):
    text: str
    score: float


class _TranslatedText(BaseModel):
    """What a sentence and a whole text both answer."""

    text: str
    score: float = Field(description="log-probability divided by the length penalty (of several sentences: the mean)")
    attention: Optional[list[list[float]]] = Field(
        default=None, description="rows: target pieces then </s>; columns: source pieces then </s> "
                                  "(of a text: only when it is one sentence)")
    source_pieces: Optional[list[str]] = None
    target_pieces: Optional[list[str]] = None
    alternatives: Optional[list[Alternative]] = None


class SentenceOut(_TranslatedText):
    source: str = Field(description="the sentence as cut from the text")


class TranslationOut(_TranslatedText):
    sentences: Optional[list[SentenceOut]] = Field(
        default=None, description="texts of more than one sentence: each sentence's translation, in order")
    model: Optional[str] = Field(default=None, description="the route when it differs from the response's: "
                                 "'de-en', 'de-en-fr' through English, 'en-en' for a text already in the target")
    detected_language: Optional[str] = Field(default=None, description="with source 'auto'")
    detected_confidence: Optional[float] = None
    warnings: Optional[list[str]] = Field(default=None, description="what was done that changes the translation, "
                                          "such as a sentence too long for the model translated in parts")


class TranslateResponse(BaseModel):
    model: str
    source: str
    target: str
    translations: list[TranslationOut]
    elapsed_ms: float


class TranslateRequestFields(BaseModel):
    """The POST /v1/translate body's fields, for type checking; `translate_request_model` adds the limits."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "Ein Hund läuft über die Wiese.", "source": "de", "target": "en", "beam_size": 5}]})

    text: Union[str, list[str]]
    source: Optional[str] = Field(default=None, max_length=16, description="optional when one model is served; "
                                  "'auto': detected per text")
    target: Optional[str] = Field(default=None, max_length=16)
    beam_size: Optional[int] = None
    n_best: int = 1
    length_penalty: Optional[float] = Field(default=None, ge=0, le=5)
    max_length_ratio: Optional[float] = Field(default=None, gt=0, le=10)
    return_attention: bool = False
    split: bool = Field(default=True, description="split texts into sentences (false: each text is one sentence)")
    format: Literal["text", "html"] = Field(default="text", description="'html': the markup comes back as sent, "
                                            "its text translated (always split)")


def translate_request_model(settings: ServiceSettings) -> type[TranslateRequestFields]:
    """The POST /v1/translate body, with this deployment's limits (characters and sentences: 413 beyond them)."""
    Text = Annotated[str, StringConstraints(max_length=settings.max_chars)]
    Texts = Annotated[list[Text], Field(min_length=1, max_length=settings.max_texts)]

    class TranslateRequest(TranslateRequestFields):
        text: Union[Text, Texts] = Field(description="one text, or a list translated in order; each text is "
                                         "split into sentences (see `split`) and comes back whole")
        beam_size: Optional[int] = Field(default=None, ge=1, le=settings.max_beam_size,
                                         description="1 is greedy; default: the model's")
        n_best: int = Field(default=1, ge=1, le=settings.max_beam_size, description="at most beam_size")

    return TranslateRequest
