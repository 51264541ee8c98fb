"""The LibreTranslate-compatible API (/translate, /languages, /detect), so its clients work unchanged.

LibreTranslate clients send JSON or form-encoded bodies (its Python client sends forms, and a
Content-Type header even on GET), take `q` as a string or a list, and expect errors as {"error": ...}.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from service.detection import Detection, rank_languages


class TranslateAnswer(BaseModel):
    translatedText: Union[str, list[str]]
    detectedLanguage: Optional[Union[dict, list[dict]]] = None
    alternatives: Optional[Union[list[str], list[list[str]]]] = None


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


def _texts(fields: dict[str, Any], max_texts: int) -> tuple[list[str], bool]:
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
    if len(texts) > max_texts:
        raise HTTPException(400, f"invalid request: at most {max_texts} texts per request")
    return texts, as_list


def _one_or_list(values: list, as_list: bool):
    return values if as_list else values[0]


def add_libretranslate_routes(app: FastAPI, state) -> None:
    limits = state.settings

    @app.post("/translate", response_model=TranslateAnswer, response_model_exclude_none=True,
              tags=["libretranslate"], summary="LibreTranslate-compatible translation (JSON or form)")
    async def translate(request: Request) -> TranslateAnswer:
        fields = await read_fields(request)
        state.guard.check(request, fields.get("api_key"))
        texts, as_list = _texts(fields, limits.max_texts)
        if fields.get("format", "text") not in ("text", "html"):
            raise HTTPException(400, "invalid request: format must be 'text' or 'html'")
        if fields.get("format") == "html":
            raise HTTPException(400, "format 'html' is not supported by this server; send plain text")
        alternatives = _int_field(fields, "alternatives", 0, limits.max_beam_size - 1)
        try:
            results = await state.translate_request(
                request, texts, fields.get("source") or "auto", fields.get("target"), detect=True,
                n_best=alternatives + 1, beam_size=max(alternatives + 1, _default_beam(state)) if alternatives else None)
        except HTTPException as err:
            if err.status_code != 413:
                raise
            raise HTTPException(400, f"invalid request: {err.detail}") from None  # LibreTranslate says 400
        answer = TranslateAnswer(translatedText=_one_or_list([r.translation.text for r in results], as_list))
        if any(r.detected for r in results):
            answer.detectedLanguage = _one_or_list([r.detected[0].model_dump() if r.detected else None
                                                    for r in results], as_list)
        if alternatives:
            answer.alternatives = _one_or_list([[a.text for a in r.translation.alternatives] for r in results],
                                               as_list)
        return answer

    async def languages() -> list[dict]:
        return state.require_models().languages()

    for method in ("GET", "POST"):  # LibreTranslate answers both
        app.add_api_route("/languages", languages, methods=[method], response_model=list[Language],
                          tags=["libretranslate"], summary="languages and the targets each translates into",
                          operation_id=f"languages_{method.lower()}")

    @app.post("/detect", response_model=Union[list[Detection], list[list[Detection]]], tags=["libretranslate"],
              summary="the languages the service knows, most likely first (per text when q is a list)")
    async def detect(request: Request) -> list:
        fields = await read_fields(request)
        state.guard.check(request, fields.get("api_key"))
        texts, as_list = _texts(fields, limits.max_texts)
        if sum(len(t) for t in texts) > limits.max_chars:
            raise HTTPException(400, f"invalid request: at most {limits.max_chars} characters per request")
        known = state.require_models().known_languages
        return _one_or_list([rank_languages(text, known) for text in texts], as_list)

    @app.get("/frontend/settings", tags=["libretranslate"], summary="settings LibreTranslate front ends read")
    async def frontend_settings() -> dict:
        registry = state.require_models()
        first = registry.models[0]
        return {"charLimit": limits.max_chars, "frontendTimeout": int(limits.request_timeout_s * 1000),
                "apiKeys": bool(limits.api_keys), "keyRequired": bool(limits.api_keys), "suggestions": False,
                "supportedFilesFormat": [], "language": {"source": {"code": first.source}, "target": {"code": first.target}}}


def _default_beam(state) -> int:
    """The served models' smallest default beam (LibreTranslate requests cannot choose one)."""
    return min(m.translator.loaded.config.decode.beam_size for m in state.require_models().models)


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
