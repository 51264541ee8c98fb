"""The FastAPI application: native API, LibreTranslate-compatible API, operations routes and the page."""

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from seq2seq.config import DecodeConfig
from seq2seq.documents import Format
from seq2seq.errors import UserError
from seq2seq.translate import Translation
from service.batcher import Batcher, Overloaded
from service.decoder_process import DecoderFailed, DecoderProcess
from service.files import FileStore
from service.libretranslate import add_libretranslate_routes, is_libretranslate
from service.metrics import Metrics
from service.models import ModelRegistry, ServedModel, UnknownLanguagePair, checkpoints_in_folder
from service.schemas import (
    Alternative,
    SentenceOut,
    TranslateRequestFields,
    TranslateResponse,
    TranslationOut,
    translate_request_model,
)
from service.security import AccessGuard
from service.settings import ServiceSettings
from service.timeouts import BodyReadTimeout
from service.translation import Limits, TextResult, TooLarge, plan, translate_texts

access_log = logging.getLogger("seq2seq.access")
PAGE = Path(__file__).parent / "static" / "index.html"


class ServiceState:
    """What the routes share: settings, models, the batcher, metrics, the access guard and translated files."""

    def __init__(self, settings: ServiceSettings, registry: Optional[ModelRegistry]):
        self.settings = settings
        self.registry = registry
        self.metrics = Metrics()
        self.batcher = Batcher(self.metrics, max_wait_ms=settings.batch_wait_ms, max_tokens=settings.batch_max_tokens,
                               max_queued_sentences=settings.queue_sentences)
        self.guard = AccessGuard(settings.api_keys, settings.rate_limit_per_minute)
        self.files = FileStore(settings.files_dir, settings.file_expiry_s)
        self.load_error: Optional[str] = None  # why the models could not be loaded, when they could not

    def start_decoding(self, registry: ModelRegistry) -> None:
        """Start the decoder processes with the registry's models and the batcher that feeds them."""
        decoders = [DecoderProcess({m.name: m.checkpoints for m in registry.models}, device=self.settings.device,
                                   batch_tokens=self.settings.batch_max_tokens,
                                   threads=self.settings.threads_per_decoder, precision=self.settings.reduced_precision)
                    for _ in range(self.settings.decoders)]
        try:
            for decoder in decoders:
                decoder.start()
        except Exception:
            for decoder in decoders:  # the ones already started; stop() passes over the others
                decoder.stop()
            raise
        self.batcher.start(decoders)

    def require_models(self) -> ModelRegistry:
        if self.registry is None and self.load_error:
            raise HTTPException(503, f"the models could not be loaded: {self.load_error}")
        if self.registry is None:
            raise HTTPException(503, "models are still loading", headers={"Retry-After": "5"})
        return self.registry

    def decode_options(self, model: ServedModel, **overrides) -> DecodeConfig:
        """The model's decoding defaults with the request's overrides; 422 when they do not fit together."""
        try:
            return model.options(**overrides)
        except UserError as err:  # shaped like the body's own validation errors, as /openapi.json documents
            raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": str(err)}]) from None

    async def translate_request(self, request: Request, texts: list[str], source: Optional[str],
                                target: Optional[str], *, detect: bool, with_attention: bool = False,
                                split: bool = True, format: Format = "text", limits: Optional[Limits] = None,
                                timeout_s: Optional[float] = None, **overrides) -> list[TextResult]:
        """Texts (or HTML documents) translated whole: routed (detected per text with `detect`), split into
        sentences, reassembled. 400 for a language pair no model or pivot serves (or HTML beyond reading),
        413 over the limits (the request limits unless given) counted after splitting."""
        registry = self.require_models()
        try:
            routes = plan(registry, texts, source, target, detect)
        except UnknownLanguagePair as err:
            raise HTTPException(400, str(err)) from None

        def options_for(model: ServedModel, last: bool) -> DecodeConfig:
            return self.decode_options(model, **(overrides if last else {**overrides, "n_best": 1}))

        async def sentences(model: ServedModel, batch: list[str], options: DecodeConfig, attention: bool):
            return await self.translate(request, model, batch, options, attention, timeout_s)

        limits = limits or Limits(max_chars=self.settings.max_chars, max_sentences=self.settings.max_sentences)
        try:
            return await translate_texts(texts, routes, translate=sentences, options_for=options_for, limits=limits,
                                         with_attention=with_attention, split=split, format=format)
        except TooLarge as err:
            raise HTTPException(413, str(err)) from None
        except UserError as err:
            raise HTTPException(400, f"invalid request: {err}") from None

    async def translate(self, request: Request, model: ServedModel, texts: list[str], options: DecodeConfig,
                        with_attention: bool = False, timeout_s: Optional[float] = None) -> list[Translation]:
        """Through the batcher; dropped if the client disconnects; 503 when overloaded, 504 on timeout."""
        timeout_s = timeout_s or self.settings.request_timeout_s
        work = asyncio.ensure_future(self.batcher.translate(model, texts, options, with_attention, timeout_s))
        watcher = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not work.done():
            work.cancel()  # the client is gone; the batcher skips the job if it has not started
            raise HTTPException(499, "client disconnected")
        try:
            return work.result()
        except Overloaded as err:
            self.metrics.rejected.labels("overloaded").inc()
            raise HTTPException(503, f"server busy ({err}); retry shortly", headers={"Retry-After": "1"}) from None
        except DecoderFailed as err:
            raise HTTPException(503, f"translation failed: {err}; retry shortly",
                                headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise HTTPException(504, f"translation took longer than {timeout_s:g} s") from None


async def _wait_for_disconnect(request: Request) -> None:
    """Returns when the client goes away: once the body is read, the next ASGI message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(settings: ServiceSettings, registry: Optional[ModelRegistry] = None) -> FastAPI:
    """The app for `settings`; models come from `registry`, or are loaded in the background at start-up."""
    state = ServiceState(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = None
        if state.registry is None:
            loader = asyncio.ensure_future(asyncio.to_thread(_load_registry, state))
        else:
            await asyncio.to_thread(state.start_decoding, state.registry)
        yield
        if loader:
            loader.cancel()
        await asyncio.to_thread(state.batcher.stop)  # in-flight requests have finished: uvicorn waited for them
        state.files.close()

    app = FastAPI(title="seq2seq translation service", version="1.0", lifespan=lifespan,
                  description="RNN attention translation: a native API and a LibreTranslate-compatible one.")
    app.state.service = state
    app.add_middleware(CorsByApi, native=settings.cors_origins, libretranslate=settings.libretranslate_cors_origins)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       max_file_bytes=settings.max_file_bytes + 65_536)  # the multipart framing around the file
    app.add_middleware(BodyReadTimeout, seconds=settings.body_timeout_s)  # outside the size limit: it reads too
    app.add_middleware(ObserveRequests, metrics=state.metrics)
    _add_error_handlers(app)
    _add_operations_routes(app, state)
    _add_native_routes(app, state)
    add_libretranslate_routes(app, state)
    return app


def load_registry(settings: ServiceSettings) -> ModelRegistry:
    """The models named in the settings (explicit ones, then those in models_dir), loaded."""
    unnamed = list(settings.checkpoints)
    if settings.models_dir:
        unnamed += [str(path) for path in checkpoints_in_folder(settings.models_dir)]
    return ModelRegistry.load(settings.models, unnamed, device=settings.device,
                              reduced_precision=settings.reduced_precision)


def _load_registry(state: ServiceState) -> None:
    try:
        registry = load_registry(state.settings)
        state.start_decoding(registry)
        state.registry = registry  # ready only now
    except Exception as err:  # noqa: BLE001 - logged; /ready stays 503 and says why
        state.load_error = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        logging.getLogger("seq2seq.service").exception("loading models failed")


# --- routes ---------------------------------------------------------------------------------------
def _add_operations_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/health", tags=["operations"], summary="the process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="models are loaded and requests are accepted")
    async def ready() -> JSONResponse:
        if state.registry is None and state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
        if state.registry is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "models": [f"{m.source}-{m.target}" for m in state.registry.models]})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def _add_native_routes(app: FastAPI, state: ServiceState) -> None:
    TranslateRequest = translate_request_model(state.settings)

    # FastAPI validates `body` against the class built from the settings, which mypy cannot take as a type
    # (the ignore is that alone); `params` is the same object, checked as the TranslateRequestFields it subclasses.
    @app.post("/v1/translate", response_model=TranslateResponse, response_model_exclude_none=True,
              tags=["translation"], summary="translate one text or a list; each text is split into sentences")
    async def translate(body: TranslateRequest, request: Request) -> TranslateResponse:  # type: ignore[valid-type]
        params: TranslateRequestFields = body
        started = time.perf_counter()
        state.guard.check(request)
        texts = [params.text] if isinstance(params.text, str) else list(params.text)
        results = await state.translate_request(
            request, texts, params.source, params.target, detect=params.source == "auto",
            with_attention=params.return_attention, split=params.split, format=params.format,
            beam_size=params.beam_size, n_best=params.n_best, length_penalty=params.length_penalty,
            max_length_ratio=params.max_length_ratio)
        first = results[0].route
        return TranslateResponse(
            model=first.name, source=first.source, target=first.target,
            translations=[_translation_out(r, first.name, params.return_attention, params.n_best > 1) for r in results],
            elapsed_ms=round(1000 * (time.perf_counter() - started), 2))


def _translation_out(result: TextResult, model: str, with_attention: bool, with_alternatives: bool) -> TranslationOut:
    document = result.translation
    out = TranslationOut(text=document.text, score=round(document.score, 4),
                         model=result.route.name if result.route.name != model else None,
                         warnings=document.notes or None)
    if result.detected:
        out.detected_language, out.detected_confidence = result.detected[0].language, result.detected[0].confidence
    if with_alternatives:
        out.alternatives = [Alternative(text=a.text, score=round(a.score, 4)) for a in document.alternatives]
    if len(document.sentences) == 1:
        out.attention, out.source_pieces, out.target_pieces = _attention(document.sentences[0], with_attention)
    elif len(document.sentences) > 1:
        out.sentences = [_sentence_out(source, t, with_attention, with_alternatives)
                         for source, t in zip(document.source_sentences, document.sentences)]
    return out


def _sentence_out(source: str, t: Translation, with_attention: bool, with_alternatives: bool) -> SentenceOut:
    out = SentenceOut(source=source, text=t.text, score=round(t.score, 4))
    out.attention, out.source_pieces, out.target_pieces = _attention(t, with_attention)
    if with_alternatives:
        out.alternatives = [Alternative(text=a.text, score=round(a.score, 4)) for a in t.alternatives]
    return out


def _attention(t: Translation, with_attention: bool) -> tuple:
    """(attention rows, source pieces, target pieces) when asked for, else Nones (left out of the answer)."""
    if not with_attention:
        return None, None, None
    rows = [[round(w, 4) for w in row] for row in t.attention.tolist()] if t.attention is not None else []
    return rows, t.source_pieces, t.target_pieces


# --- errors: a clear 4xx for anything a client sends, in each API's own shape -----------------------
def _is_libretranslate(request: Request) -> bool:
    return is_libretranslate(request.url.path)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        body = {"error": err.detail} if _is_libretranslate(request) else {"detail": err.detail}
        return JSONResponse(body, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in err.errors()]
        if _is_libretranslate(request):
            return JSONResponse({"error": f"invalid request: {errors[0]['msg'] if errors else 'bad body'}"}, 400)
        return JSONResponse({"detail": errors}, status_code=422)


# --- middleware -----------------------------------------------------------------------------------
class BodySizeLimit:
    """413 for bodies over the limit (a file upload's own on /translate_file), judged by Content-Length before
    anything is read, or by counting the bytes of a body sent without one; in each API's error shape."""

    def __init__(self, app, max_bytes: int, max_file_bytes: int):
        self.app, self.max_bytes, self.max_file_bytes = app, max_bytes, max_file_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_file_bytes if scope["path"] == "/translate_file" else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            if declared.isdigit() and int(declared) <= DRAIN_BYTES:
                await _drain(receive)  # a client that sends its whole body before reading then sees the 413
            return await _too_large(scope, limit)(scope, receive, send)
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # No length given (chunked): read up to the limit here, then replay the body to the app.
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    return await _too_large(scope, limit)(scope, receive, send)
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


# An oversized body up to this size is read and dropped before the 413 is sent: a client that writes its
# whole body before reading the answer (Python's urllib) would otherwise get "connection reset", not the 413.
DRAIN_BYTES = 64 * 1024 * 1024


async def _drain(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _too_large(scope, limit: int) -> JSONResponse:
    message = f"request body over {limit} bytes"
    return JSONResponse({"error": message} if is_libretranslate(scope["path"]) else {"detail": message}, 413)


class CorsByApi:
    """CORS for each API on its own terms: the LibreTranslate routes open to every origin by default, as
    LibreTranslate is (its clients are web pages), the native API closed unless origins are configured."""

    def __init__(self, app, native: list[str], libretranslate: list[str]):
        self.app = app
        self.native = _cors(app, native)
        self.libretranslate = _cors(app, libretranslate)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        handler = self.libretranslate if is_libretranslate(scope["path"]) else self.native
        await handler(scope, receive, send)


def _cors(app, origins: list[str]):
    origins = [o for o in origins if o]
    if not origins:
        return app
    return CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"],
                          allow_headers=["Authorization", "Content-Type"] if origins == ["*"] else ["*"])


def _replay(body: bytes, receive):
    """A receive channel that yields `body` once, then defers to the real one (for disconnects)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ObserveRequests:
    """Request ids, one JSON access-log line per request, and the request metrics. Never logs bodies,
    query strings or headers, so API keys stay out of logs."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = _request_id(dict(scope["headers"]).get(b"x-request-id"))
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            access_log.info(json.dumps({
                "ts": round(time.time(), 3), "request_id": request_id, "method": scope["method"],
                "path": scope["path"], "route": route, "status": status, "ms": round(1000 * seconds, 2),
                "client": scope["client"][0] if scope.get("client") else None}))


def _request_id(given: Optional[bytes]) -> str:
    """The client's X-Request-ID when it is short and printable, else a fresh one."""
    if given and len(given) <= 64 and all(32 < b < 127 for b in given):
        return given.decode()
    return uuid.uuid4().hex
