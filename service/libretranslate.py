"""The LibreTranslate-compatible API (/translate, /languages, /detect), so its clients work unchanged.

LibreTranslate clients send JSON or form-encoded bodies (its Python client sends forms, and a
Content-Type header even on GET), take `q` as a string or a list, and expect errors as {"error": ...}.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from service.models import ServedModel


class TranslateAnswer(BaseModel):
    translatedText: Union[str, list[str]]
    detectedLanguage: Optional[Union[dict, list[dict]]] = None
    alternatives: Optional[Union[list[str], list[list[str]]]] = None


class Detection(BaseModel):
    confidence: float = Field(description="0 to 100")
    language: str


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


async def read_fields(request: Request) -> dict[str, Any]:
    """Fields from a JSON or form body, with the query string as a fallback; q may repeat in forms."""
    fields: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type == "application/json":
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "invalid request: body is not valid JSON") from None
        except RecursionError:  # json's parser recurses once per nesting level
            raise HTTPException(400, "invalid request: JSON nested too deeply") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "invalid request: JSON body must be an object")
        fields.update(body)
    elif request.method == "POST" and content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        for key in form.keys():
            values = form.getlist(key)
            fields[key] = values if len(values) > 1 else values[0]
    return fields


def _texts(fields: dict[str, Any], max_sentences: int, max_chars: int) -> tuple[list[str], bool]:
    """q as a list of strings, and whether it came as a list."""
    q = fields.get("q")
    if q is None:
        raise HTTPException(400, "invalid request: missing q parameter")
    as_list = isinstance(q, list)
    texts = q if as_list else [q]
    if not all(isinstance(t, str) for t in texts):
        raise HTTPException(400, "invalid request: q must be a string or a list of strings")
    if not texts:
        raise HTTPException(400, "invalid request: q is an empty list")
    if len(texts) > max_sentences:
        raise HTTPException(400, f"invalid request: at most {max_sentences} texts per request")
    if any(len(t) > max_chars for t in texts):
        raise HTTPException(400, f"invalid request: each text may have at most {max_chars} characters")
    return texts, as_list


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def detect_language(text: str, candidates: list[str]) -> Detection:
    """The most likely of `candidates` (py3langid, restricted to them)."""
    if len(candidates) == 1:
        return Detection(confidence=100.0, language=candidates[0])
    ranked = _identifier().rank(text)
    scores = {lang: score for lang, score in ranked if lang in candidates}
    total = sum(scores.values()) or 1.0
    language = max(candidates, key=lambda lang: scores.get(lang, 0.0))
    return Detection(confidence=round(100 * scores.get(language, 0.0) / total, 1), language=language)


def add_libretranslate_routes(app: FastAPI, state) -> None:
    limits = state.settings

    @app.post("/translate", response_model=TranslateAnswer, response_model_exclude_none=True,
              tags=["libretranslate"], summary="LibreTranslate-compatible translation (JSON or form)")
    async def translate(request: Request) -> TranslateAnswer:
        fields = await read_fields(request)
        state.guard.check(request, fields.get("api_key"))
        texts, as_list = _texts(fields, limits.max_sentences, limits.max_chars)
        if fields.get("format", "text") not in ("text", "html"):
            raise HTTPException(400, "invalid request: format must be 'text' or 'html'")
        if fields.get("format") == "html":
            raise HTTPException(400, "format 'html' is not supported by this server; send plain text")
        registry = state.require_models()
        source, detected = fields.get("source") or "auto", None
        if source == "auto":
            candidates = [m.source for m in registry.models if fields.get("target") in (None, m.target)]
            detections = [detect_language(t, candidates or registry.source_languages) for t in texts]
            detected = [d.model_dump() for d in detections] if as_list else detections[0].model_dump()
            source = detections[0].language
        model: ServedModel = state.model_for(source, fields.get("target"))
        alternatives = _int_field(fields, "alternatives", 0, limits.max_beam_size - 1)
        options = state.decode_options(model, n_best=alternatives + 1,
                                       beam_size=max(alternatives + 1, model.translator.loaded.config.decode.beam_size))
        results = await state.translate(request, model, texts, options)
        answer = TranslateAnswer(translatedText=[r.text for r in results] if as_list else results[0].text,
                                 detectedLanguage=detected)
        if alternatives:
            alts = [[a.text for a in r.alternatives] for r in results]
            answer.alternatives = alts if as_list else alts[0]
        return answer

    async def languages() -> list[dict]:
        return state.require_models().languages()

    for method in ("GET", "POST"):  # LibreTranslate answers both
        app.add_api_route("/languages", languages, methods=[method], response_model=list[Language],
                          tags=["libretranslate"], summary="languages and the targets each translates into",
                          operation_id=f"languages_{method.lower()}")

    @app.post("/detect", response_model=list[Detection], tags=["libretranslate"],
              summary="identify the language among the served source languages")
    async def detect(request: Request) -> list[Detection]:
        fields = await read_fields(request)
        state.guard.check(request, fields.get("api_key"))
        texts, _ = _texts(fields, limits.max_sentences, limits.max_chars)
        return [detect_language(" ".join(texts), state.require_models().source_languages)]

    @app.get("/frontend/settings", tags=["libretranslate"], summary="settings LibreTranslate front ends read")
    async def frontend_settings() -> dict:
        registry = state.require_models()
        first = registry.models[0]
        return {"charLimit": limits.max_chars, "frontendTimeout": int(limits.request_timeout_s * 1000),
                "apiKeys": bool(limits.api_keys), "keyRequired": bool(limits.api_keys), "suggestions": False,
                "supportedFilesFormat": [], "language": {"source": {"code": first.source}, "target": {"code": first.target}}}


def _int_field(fields: dict, name: str, low: int, high: int) -> int:
    value = fields.get(name, low)
    try:
        number = int(value)
        if isinstance(value, bool) or (isinstance(value, float) and number != value):
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        raise HTTPException(400, f"invalid request: {name} must be an integer") from None
    if not low <= number <= high:
        raise HTTPException(400, f"invalid request: {name} must be between {low} and {high}")
    return number
