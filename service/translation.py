"""A request's texts translated whole, for both APIs: each text's language (given, or detected per text), its
route (the same language, one model, or two through a pivot), its sentences, the limits counted after
splitting, and each text put back together. The batcher only ever sees sentences."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Sequence

from seq2seq.config import DecodeConfig
from seq2seq.documents import (
    Document,
    DocumentTranslation,
    Format,
    assemble,
    needs_attention,
    segment_texts,
    sentences_of,
)
from seq2seq.segment import whole
from seq2seq.translate import Translation
from service.detection import Detection, rank_languages
from service.models import ModelRegistry, Route, ServedModel, UnknownLanguagePair

AUTO = (None, "", "auto")
# (model, sentences, options, with_attention) → their translations, through the batcher
TranslateSentences = Callable[[ServedModel, list[str], DecodeConfig, bool], Awaitable[list[Translation]]]
# (model, is the last hop) → the decoding options for that model
OptionsFor = Callable[[ServedModel, bool], DecodeConfig]


class TooLarge(ValueError):
    """The request is over a limit counted after splitting (sentences) or in characters."""


@dataclass
class TextResult:
    translation: DocumentTranslation
    route: Route
    detected: Optional[list[Detection]]  # the candidates, most likely first, when the source was detected


@dataclass(frozen=True)
class Limits:
    max_chars: int  # characters per request, all texts together
    max_sentences: int  # sentences per request after splitting


def plan(registry: ModelRegistry, texts: Sequence[str], source: Optional[str], target: Optional[str],
         detect: bool) -> list[tuple[Route, Optional[list[Detection]]]]:
    """Each text's route. With `detect` and source 'auto' (or none), the source is each text's most likely
    language that has a route to the target; a text already in the target language keeps the identity route.
    Codes are read as `registry.language` spells them ('zh-Hans', 'pt_BR', 'EN')."""
    source = registry.language(source) if source not in AUTO and isinstance(source, str) else source
    target = registry.language(target) if target not in AUTO and isinstance(target, str) else target
    if not (detect and source in AUTO):
        if source in AUTO or target in AUTO:  # the one served model that fits the side given
            model = registry.resolve(source, target)
            source, target = model.source, model.target
        route = registry.route(source, target)
        return [(route, None) for _ in texts]
    target = target or _only_target(registry)
    routes: list[tuple[Route, Optional[list[Detection]]]] = []
    for text in texts:
        ranked = rank_languages(text, registry.known_languages)
        routes.append((_first_route(registry, ranked, target), ranked))
    return routes


def _only_target(registry: ModelRegistry) -> str:
    targets = {m.target for m in registry.models}
    if len(targets) != 1:
        raise UnknownLanguagePair("give a target language: the served models translate into "
                                  f"{', '.join(sorted(targets))}")
    return targets.pop()


def _first_route(registry: ModelRegistry, ranked: list[Detection], target: str) -> Route:
    for detection in ranked:
        try:
            return registry.route(detection.language, target)
        except UnknownLanguagePair:
            continue
    raise UnknownLanguagePair(f"no served language translates into {target}")


async def translate_texts(texts: Sequence[str], routes: list[tuple[Route, Optional[list[Detection]]]], *,
                          translate: TranslateSentences, options_for: OptionsFor, limits: Limits,
                          with_attention: bool = False, split: bool = True,
                          format: Format = "text") -> list[TextResult]:
    """All texts translated whole, in input order; TooLarge before any decoding when over a limit. HTML texts
    come back with their markup (seq2seq/markup.py)."""
    characters = sum(len(t) for t in texts)
    if characters > limits.max_chars:
        raise TooLarge(f"{characters} characters in the request; at most {limits.max_chars}")
    segmented = [_segment(text, route, split, format) for text, (route, _) in zip(texts, routes)]
    sentences = sum(len(s.sentences) for s in segmented)
    if sentences > limits.max_sentences:
        raise TooLarge(f"{sentences} sentences in the request after splitting; at most {limits.max_sentences}")
    groups: dict[str, list[int]] = {}
    for index, (route, _) in enumerate(routes):
        groups.setdefault(route.name, []).append(index)
    documents: dict[int, DocumentTranslation] = {}  # by text index: each group's run fills its own

    async def run(indices: list[int]) -> None:
        route = routes[indices[0]][0]
        parts = [segmented[i] for i in indices]
        attention = with_attention or needs_attention(parts)
        translations = await _through(route, sentences_of(parts), translate, options_for, attention)
        for i, document in zip(indices, assemble(parts, translations)):
            documents[i] = document

    await asyncio.gather(*(run(indices) for indices in groups.values()))
    return [TextResult(documents[i], route, detected) for i, (route, detected) in enumerate(routes)]


def _segment(text: str, route: Route, split: bool, format: Format) -> Document:
    if not route.hops:  # the same language: given back as it is
        return whole(text)
    model = route.hops[0]
    return segment_texts([text], route.source, model.src_tokenizer, model.max_source_pieces, split, format=format)[0]


async def _through(route: Route, sentences: list[str], translate: TranslateSentences, options_for: OptionsFor,
                   with_attention: bool) -> list[Translation]:
    """The sentences through each model of the route in turn; the identity gives them back."""
    if not route.hops:
        return [Translation(text=s, score=0.0, source_pieces=[], target_pieces=[]) for s in sentences]
    if not sentences:
        return []
    results: list[Translation] = []
    for number, hop in enumerate(route.hops, start=1):
        last = number == len(route.hops)
        previous = results
        results = await translate(hop, sentences if number == 1 else [t.text for t in previous],
                                  options_for(hop, last), with_attention and len(route.hops) == 1)
        for result, before in zip(results, previous):  # a pivot's score: the sum over its hops
            result.score += before.score
    return results
