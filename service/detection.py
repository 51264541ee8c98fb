"""Language identification over the languages the service knows (py3langid, per text)."""
from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field


class Detection(BaseModel):
    confidence: float = Field(description="0 to 100: py3langid's probability of this language among all it knows")
    language: str


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def rank_languages(text: str, candidates: list[str]) -> list[Detection]:
    """`candidates`, most likely first, each with py3langid's probability over all of its ~97 languages.

    The probabilities are not renormalised over the candidates: a text in none of them (Spanish sent to a
    German–English service) gets a low confidence for every candidate instead of 100 for one of them.
    """
    probabilities = dict(_identifier().rank(text))
    ranked = sorted(candidates, key=lambda lang: -probabilities.get(lang, 0.0))
    return [Detection(confidence=round(100 * probabilities.get(lang, 0.0), 1), language=lang) for lang in ranked]
