"""Fair turns for huge requests: without them, one request of many long sentences at a wide beam is a
single decoder job, and every request arriving after it waits for all of it. Split into pieces of at
most one batch's token budget, queued one after another, it lets requests arriving meanwhile be decoded
between its pieces: each waits for about one batch of it, not the whole."""
from __future__ import annotations

import asyncio

from seq2seq.config import DecodeConfig
from seq2seq.translate import Translation
from service.batcher import Batcher
from service.models import ServedModel


def cost(text: str, beam_size: int) -> int:
    """The batcher's own estimate of a sentence's source tokens (Job.cost), times the beam."""
    return (len(text) // 4 + 2) * beam_size


def turns(texts: list[str], beam_size: int, budget: int) -> list[list[str]]:
    """`texts` in order, cut into runs of at most `budget` estimated tokens (at least one text each)."""
    pieces: list[list[str]] = [[]]
    used = 0
    for text in texts:
        if pieces[-1] and used + cost(text, beam_size) > budget:
            pieces.append([])
            used = 0
        pieces[-1].append(text)
        used += cost(text, beam_size)
    return pieces


async def translate_in_turns(batcher: Batcher, model: ServedModel, texts: list[str], options: DecodeConfig,
                             with_attention: bool, timeout: float, budget: int) -> list[Translation]:
    """Like batcher.translate, one turn at a time, all turns sharing the one `timeout`.

    The whole request is admitted before its first turn: refused at once when the queue cannot hold all of
    it, rather than after some of its turns were decoded for nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    batcher.admit(len(texts))
    not_queued = len(texts)  # admitted room that no turn has taken yet, given back if the request ends early
    results: list[Translation] = []
    try:
        for piece in turns(texts, options.beam_size, budget):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            not_queued -= len(piece)
            results += await batcher.translate(model, piece, options, with_attention, remaining)
    finally:
        batcher.release(not_queued)
    return results
