"""The LibreTranslate-compatible API, so its clients and integrations work unchanged.

Routes: /translate (text and HTML), /translate_file and /download_file, /detect, /languages (GET),
/frontend/settings, /suggest, /spec. Clients send JSON (Mastodon, Weblate), forms (Discourse, the Python
client), multipart (Nextcloud's library) or the query string (Nextcloud's /detect), take `q` as a string or a
list, and read errors as {"error": ...}; a missing API key where keys are required is 400 and a wrong one 403,
as LibreTranslate answers.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from seq2seq.documents import Format
from seq2seq.errors import UserError
from seq2seq.formats import SUPPORTED, read_document, suffix_of
from service.detection import Detection, rank_languages
from service.files import FileGone
from service.models import LANGUAGE_NAMES
from service.translation import Limits

if TYPE_CHECKING:
    from service.app import ServiceState

PATHS = ("/translate", "/translate_file", "/languages", "/detect", "/frontend/settings", "/suggest", "/spec")
PREFIXES = ("/download_file/",)


class TranslateAnswer(BaseModel):
    translatedText: Union[str, list[str]]
    detectedLanguage: Optional[Union[dict, list[Optional[dict]]]] = None
    alternatives: Optional[Union[list[str], list[list[str]]]] = None


class FileAnswer(BaseModel):
    translatedFileUrl: str


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


def is_libretranslate(path: str) -> bool:
    return path in PATHS or path.startswith(PREFIXES)


async def read_fields(request: Request) -> dict[str, Any]:
    """Fields from a JSON, form or multipart body, with the query string under them; q may repeat in forms."""
    fields: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST":
        return fields
    if content_type == "application/json":
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "invalid request: body is not valid JSON") from None
        except RecursionError:  # json's parser recurses once per nesting level
            raise HTTPException(400, "invalid request: JSON nested too deeply") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "invalid request: JSON body must be an object")
        fields.update(body)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if not await request.body():  # Nextcloud's library: fields in the query string, an empty multipart body
            return fields
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - python-multipart's errors for a malformed body
            raise HTTPException(400, "invalid request: malformed form body") from None
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


def _format(fields: dict[str, Any]) -> Format:
    value = fields.get("format") or "text"
    if value == "text":
        return "text"
    if value == "html":
        return "html"
    raise HTTPException(400, "invalid request: format must be 'text' or 'html'")


def add_libretranslate_routes(app: FastAPI, state: ServiceState) -> None:
    settings = state.settings

    def check_key(request: Request, fields: dict[str, Any]) -> None:
        state.guard.check(request, fields.get("api_key"), missing_status=400)

    @app.post("/translate", response_model=TranslateAnswer, response_model_exclude_none=True,
              tags=["libretranslate"], summary="translate text or HTML (JSON, form or multipart)")
    async def translate(request: Request) -> TranslateAnswer:
        fields = await read_fields(request)
        check_key(request, fields)
        texts, as_list = _texts(fields, settings.max_texts)
        alternatives = _int_field(fields, "alternatives", 0, settings.max_beam_size)
        # None: the model's default (as when no alternatives are asked for)
        n_best = alternatives + 1 if alternatives else None
        beam_size = max(alternatives + 1, _default_beam(state)) if alternatives else None
        try:
            results = await state.translate_request(request, texts, fields.get("source") or "auto",
                                                    fields.get("target"), detect=True, format=_format(fields),
                                                    n_best=n_best, beam_size=beam_size)
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

    @app.post("/translate_file", response_model=FileAnswer, tags=["libretranslate"],
              summary=f"translate a file ({', '.join(SUPPORTED)}); answers the URL to download it from")
    async def translate_file(request: Request) -> FileAnswer:
        fields = await read_fields(request)
        check_key(request, fields)
        upload = fields.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "invalid request: missing file parameter")
        try:
            suffix_of(upload.filename or "")
        except UserError as err:
            raise HTTPException(400, f"invalid request: {err}") from None
        data = await upload.read(settings.max_file_bytes + 1)
        if len(data) > settings.max_file_bytes:
            raise HTTPException(413, f"the file is over {settings.max_file_bytes} bytes")
        try:
            document = read_document(data, upload.filename or "")
        except UserError as err:
            raise HTTPException(400, f"invalid request: {err}") from None
        limits = Limits(max_chars=settings.max_file_chars, max_sentences=settings.max_file_sentences)
        results = await state.translate_request(request, document.texts, fields.get("source") or "auto",
                                                fields.get("target"), detect=True, format=document.format,
                                                limits=limits, timeout_s=settings.file_timeout_s)
        stored = state.files.put(upload.filename or "file", document.write([r.translation.text for r in results]))
        return FileAnswer(translatedFileUrl=str(request.url_for("download_file", stored=stored)))

    @app.get("/download_file/{stored}", tags=["libretranslate"], summary="a translated file, while it lasts")
    async def download_file(stored: str) -> FileResponse:
        try:
            path = state.files.path(stored)
        except FileGone:
            raise HTTPException(404, "no such file: it expired, or was never here") from None
        return FileResponse(path, filename=state.files.download_name(stored))

    @app.get("/languages", response_model=list[Language], tags=["libretranslate"],
             summary="languages and the targets each translates into")
    async def languages() -> list[dict]:
        return state.require_models().languages()

    @app.post("/detect", response_model=Union[list[Detection], list[list[Detection]]], tags=["libretranslate"],
              summary="the languages the service knows, most likely first (per text when q is a list)")
    async def detect(request: Request) -> list:
        fields = await read_fields(request)
        check_key(request, fields)
        texts, as_list = _texts(fields, settings.max_texts)
        if sum(len(t) for t in texts) > settings.max_chars:
            raise HTTPException(400, f"invalid request: at most {settings.max_chars} characters per request")
        known = state.require_models().known_languages
        return _one_or_list([rank_languages(text, known) for text in texts], as_list)

    @app.post("/suggest", tags=["libretranslate"], summary="improved translations: not taken by this server")
    async def suggest() -> JSONResponse:
        return JSONResponse({"error": "Suggestions are disabled on this server."}, status_code=403)

    @app.get("/spec", tags=["libretranslate"], summary="the API description (OpenAPI)")
    async def spec() -> dict:
        return app.openapi()

    @app.get("/frontend/settings", tags=["libretranslate"], summary="settings LibreTranslate front ends read")
    async def frontend_settings() -> dict:
        first = state.require_models().models[0]
        return {"charLimit": settings.max_chars, "frontendTimeout": settings.frontend_timeout_ms,
                "apiKeys": bool(settings.api_keys), "keyRequired": bool(settings.api_keys), "suggestions": False,
                "filesTranslation": True, "supportedFilesFormat": list(SUPPORTED),
                "language": {"source": _named(first.source), "target": _named(first.target)}}


def _named(code: str) -> dict:
    return {"code": code, "name": LANGUAGE_NAMES.get(code, code)}


def _default_beam(state: ServiceState) -> int:
    """The served models' smallest default beam (LibreTranslate requests cannot choose one)."""
    return min(m.default_options.beam_size for m in state.require_models().models)


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
