"""Admission and dynamic batching: the one place a request enters the queue, in turns, and leaves it.

A request is admitted whole or refused (Overloaded). Its sentences are queued in turns of at most one
batch's token budget: without turns, one request of many long sentences at a wide beam would be a single
decoder job, and every request arriving after it would wait for all of it; with them, each waits for about
one batch of it. Concurrent turns are gathered for a few milliseconds (or until the budget is full) and
handed as one batch to a decoder process by a worker thread, so the event loop never blocks. With several
decoder processes (`decoders`), each has its own worker thread taking batches from the one queue: while one
process decodes, the next batch gathers for another, instead of the decoder waiting while its answers go back
and the next requests arrive."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from seq2seq.config import DecodeConfig
from seq2seq.translate import Translation
from service.decoder_process import DecoderProcess
from service.metrics import Metrics
from service.models import ServedModel

log = logging.getLogger("seq2seq.service")


class Overloaded(Exception):
    """The queue is full; the client should retry later (503 with Retry-After)."""


def sentence_cost(text: str, beam_size: int) -> int:
    """Approximate source tokens times the beam: a batch's budget is counted in these (no tokenizing on the
    event loop)."""
    return (len(text) // 4 + 2) * beam_size


def turns(texts: list[str], beam_size: int, budget: int) -> list[list[str]]:
    """`texts` in order, cut into runs of at most `budget` estimated tokens (at least one text each)."""
    pieces: list[list[str]] = [[]]
    used = 0
    for text in texts:
        cost = sentence_cost(text, beam_size)
        if pieces[-1] and used + cost > budget:
            pieces.append([])
            used = 0
        pieces[-1].append(text)
        used += cost
    return pieces


class QueueRoom:
    """How many sentences are queued, against the most the queue may hold; thread-safe."""

    def __init__(self, capacity: int, metrics: Metrics):
        self.capacity, self.metrics = capacity, metrics
        self.queued = 0
        self.lock = threading.Lock()

    def take(self, sentences: int) -> None:
        """Room for a whole request, all or nothing; raises Overloaded when the queue cannot hold it."""
        with self.lock:
            if self.queued + sentences > self.capacity:
                raise Overloaded(f"{self.queued} sentences already queued")
            self._change(sentences)

    def give_back(self, sentences: int) -> None:
        with self.lock:
            self._change(-sentences)

    def _change(self, change: int) -> None:
        self.queued += change
        self.metrics.queue_sentences.set(self.queued)


@dataclass
class Job:
    model: ServedModel
    texts: list[str]
    options: DecodeConfig
    with_attention: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def cost(self) -> int:
        return sum(sentence_cost(text, self.options.beam_size) for text in self.texts)

    @property
    def batch_key(self) -> tuple:
        """Jobs decode together only with the same model and settings."""
        return (id(self.model), self.options.model_dump_json(), self.with_attention)


class Batcher:
    def __init__(self, metrics: Metrics, *, max_wait_ms: float, max_tokens: int, max_queued_sentences: int):
        self.metrics = metrics
        self.max_wait = max_wait_ms / 1000.0
        self.max_tokens = max_tokens
        self.room = QueueRoom(max_queued_sentences, metrics)
        self.queue: queue.Queue[Optional[Job]] = queue.Queue()  # None: a worker's signal to stop
        self.threads: list[threading.Thread] = []
        self.decoders: list[DecoderProcess] = []

    def start(self, decoders: list[DecoderProcess]) -> None:
        """Begin handing batches to `decoders` (already started), one worker thread each."""
        self.decoders = decoders
        self.threads = [threading.Thread(target=self._run, args=(decoder,), name=f"batcher-{index}", daemon=True)
                        for index, decoder in enumerate(decoders)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Finish everything queued, then end the workers and their decoders."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []
        for decoder in self.decoders:
            decoder.stop()
        self.decoders = []

    async def translate(self, model: ServedModel, texts: list[str], options: DecodeConfig,
                        with_attention: bool, timeout: float) -> list[Translation]:
        """Translations of `texts`, decoded in turns, all turns sharing the one `timeout`.

        Raises Overloaded at once when the queue cannot hold the whole request (before any of its turns is
        decoded for nothing), asyncio.TimeoutError when the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.room.take(len(texts))
        not_queued = len(texts)  # room no turn has taken yet, given back if the request ends early
        results: list[Translation] = []
        try:
            for turn in turns(texts, options.beam_size, self.max_tokens):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                not_queued -= len(turn)
                results += await self._decode_turn(model, turn, options, with_attention, remaining)
        finally:
            self.room.give_back(not_queued)
        return results

    async def _decode_turn(self, model: ServedModel, texts: list[str], options: DecodeConfig,
                           with_attention: bool, timeout: float) -> list[Translation]:
        loop = asyncio.get_running_loop()
        job = Job(model, texts, options, with_attention, loop.create_future(), loop)
        self.queue.put(job)
        try:
            return await asyncio.wait_for(job.future, timeout)
        finally:
            job.cancelled = True  # done, timed out or the client went away: the worker skips it if not begun

    # --- the worker thread -------------------------------------------------------------------------
    def _run(self, decoder: DecoderProcess) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            for group in self._groups(jobs):
                self._decode(group, decoder)
            if stopping:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """More jobs until the wait is over or the token budget is full; True if a stop was requested."""
        jobs, tokens = [first], first.cost
        deadline = time.perf_counter() + self.max_wait
        while tokens < self.max_tokens:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                return jobs + self._drain(), True
            jobs.append(job)
            tokens += job.cost
        return jobs, False

    def _drain(self) -> list[Job]:
        """The jobs still queued; the other workers' stop signals go back for them."""
        jobs, signals = [], 0
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                signals += 1
            else:
                jobs.append(job)
        for _ in range(signals):
            self.queue.put(None)
        return jobs

    @staticmethod
    def _groups(jobs: list[Job]) -> list[list[Job]]:
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.batch_key, []).append(job)
        return list(groups.values())

    def _decode(self, jobs: list[Job], decoder: DecoderProcess) -> None:
        live = [job for job in jobs if not job.cancelled]
        self.room.give_back(sum(len(job.texts) for job in jobs))
        if not live:
            return
        texts = [text for job in live for text in job.texts]
        model = live[0].model
        started = time.perf_counter()
        try:
            results = decoder.translate(model.name, texts, live[0].options, live[0].with_attention)
        except Exception as err:  # noqa: BLE001 - handed to each waiting request, which answers for it
            log.error("decoding failed: %s", err)
            for job in live:
                job.loop.call_soon_threadsafe(_settle, job.future, None, err)
            return
        seconds = time.perf_counter() - started
        log.debug("batch: %d sentences from %d requests, waited %.1f ms, decoded in %.1f ms", len(texts), len(live),
                  1000 * (started - live[0].queued_at), 1000 * seconds)
        self.metrics.decode_seconds.observe(seconds)
        self.metrics.batch_sentences.observe(len(texts))
        self.metrics.batch_requests.observe(len(live))
        self.metrics.sentences.labels(model.name).inc(len(texts))
        self.metrics.tokens.labels(model.name).inc(sum(len(r.target_pieces) + 1 for r in results))
        start = 0
        for job in live:
            job.loop.call_soon_threadsafe(_settle, job.future, results[start:start + len(job.texts)], None)
            start += len(job.texts)


def _settle(future: asyncio.Future, result, error: Optional[BaseException]) -> None:
    if future.done():  # the request timed out or its client disconnected meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
