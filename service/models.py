"""The registry of served models, keyed by language pair.

The HTTP process keeps only each checkpoint's card (config and tokenizers: enough to route a request, split
it into sentences and validate its options); the weights are loaded once, in the decoder process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.checkpoint import ModelCard, read_card
from seq2seq.config import DecodeConfig, decoding_options
from seq2seq.ensemble import check_members
from seq2seq.errors import UserError
from seq2seq.precision import check_precision
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import resolve_device

LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}

# The codes LibreTranslate's clients send for what a model calls by its plain code (and the reverse spellings).
LANGUAGE_ALIASES = {"zh-hans": "zh", "zh-cn": "zh", "zh-sg": "zh", "zh-hant": "zt", "zh-tw": "zt", "zh-hk": "zt",
                    "pb": "pt-br", "iw": "he", "nb": "no", "nn": "no"}


ENSEMBLE_JOIN = "+"  # `--model de-en=a.pt+b.pt`: the checkpoints decode as one ensemble


@dataclass
class ServedModel:
    """A language pair's model as the HTTP process sees it: one checkpoint, or an ensemble's members."""

    checkpoints: list[str]
    cards: list[ModelCard]  # one per checkpoint; the first's config speaks for all

    @classmethod
    def read(cls, spec: str | Path) -> "ServedModel":
        """A checkpoint path, or several joined by '+' for an ensemble (same languages and tokenizers)."""
        paths = [path.strip() for path in str(spec).split(ENSEMBLE_JOIN)]
        cards = [read_card(path) for path in paths]
        check_members(paths, cards)
        return cls(paths, cards)

    @property
    def card(self) -> ModelCard:
        return self.cards[0]

    @property
    def checkpoint(self) -> str:
        return ENSEMBLE_JOIN.join(self.checkpoints)

    @property
    def source(self) -> str:
        return self.card.src_lang

    @property
    def target(self) -> str:
        return self.card.tgt_lang

    @property
    def name(self) -> str:
        return f"{self.source}-{self.target}"

    @property
    def src_tokenizer(self) -> Tokenizer:
        return self.card.src_tokenizer

    @property
    def max_source_pieces(self) -> int:
        return min(card.max_source_pieces for card in self.cards)

    @property
    def default_options(self) -> DecodeConfig:
        return self.card.config.decode

    def options(self, **overrides) -> DecodeConfig:
        """The checkpoint's decoding defaults with `overrides` (None values ignored); a UserError if invalid."""
        return decoding_options(self.card.config.decode, **overrides)


class UnknownLanguagePair(LookupError):
    pass


@dataclass(frozen=True)
class Route:
    """How a text goes from `source` to `target`: no model (the same language), one, or two through a pivot."""

    source: str
    target: str
    hops: tuple[ServedModel, ...]

    @property
    def name(self) -> str:
        """'de-en', 'de-en-fr' through English, or 'de-de' for the identity."""
        if self.hops:
            return "-".join([self.source] + [hop.target for hop in self.hops])
        return f"{self.source}-{self.target}"


def checkpoints_in_folder(folder: str | Path) -> list[Path]:
    """What a mounted model folder serves: its best.pt if there is one (a run's checkpoints/ folder),
    else every *.pt in it, plus each subfolder's best.pt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"models folder not found: {folder}")
    top = [folder / "best.pt"] if (folder / "best.pt").is_file() else sorted(folder.glob("*.pt"))
    return top + sorted(folder.glob("*/best.pt"))


class ModelRegistry:
    def __init__(self, models: list[ServedModel]):
        self.models = models
        self.by_pair: dict[tuple[str, str], ServedModel] = {}
        for model in models:
            pair = (model.source, model.target)
            if pair in self.by_pair:
                raise UserError(f"two checkpoints for {model.source}-{model.target}: "
                                f"{self.by_pair[pair].checkpoint} and {model.checkpoint}")
            self.by_pair[pair] = model

    @classmethod
    def load(cls, named: dict[str, str], unnamed: Sequence[str] = (), *, device: str = "auto",
             reduced_precision: Optional[str] = None) -> "ModelRegistry":
        """Read each checkpoint's card. A `named` one ('de-en' → path) must translate the pair it is named for.

        The device and precision are checked here, before the decoder process loads any weights, so that a
        bad setting is refused at once."""
        if not named and not unnamed:
            raise UserError("no model to serve: give --checkpoint, --model SRC-TGT=CKPT or --models-dir")
        check_precision(reduced_precision, resolve_device(device))
        models = []
        for label, path in [*named.items(), *((None, path) for path in unnamed)]:
            model = ServedModel.read(path)
            if label is not None and label != model.name:
                raise UserError(f"--model {label}={path}: that checkpoint translates {model.name}")
            models.append(model)
        return cls(models)

    def language(self, code: str) -> str:
        """A client's language code as the served models spell it: case and '_' ignored ('pt_BR' is 'pt-br'),
        LibreTranslate's aliases ('zh-Hans' is 'zh'), else the language without its region ('en-US' is 'en')."""
        code = code.strip().lower().replace("_", "-")
        known = set(self.known_languages)
        for candidate in (code, LANGUAGE_ALIASES.get(code, code), code.split("-")[0]):
            if candidate in known:
                return candidate
        return code

    def resolve(self, source: Optional[str], target: Optional[str]) -> ServedModel:
        """The model for a language pair; either side may be omitted (or 'auto') when only one model fits."""
        source = None if source in (None, "", "auto") else source
        target = None if target in (None, "") else target
        fits = [m for m in self.models if source in (None, m.source) and target in (None, m.target)]
        if len(fits) == 1:
            return fits[0]
        pairs = ", ".join(f"{m.source}-{m.target}" for m in self.models)
        if not fits:
            raise UnknownLanguagePair(f"no model translates {source or '?'}-{target or '?'}; served: {pairs}")
        raise UnknownLanguagePair(f"several models fit {source or '?'}-{target or '?'}; "
                                  f"give source and target ({pairs})")

    def route(self, source: str, target: str) -> Route:
        """The same language, a served model, or two chained through a common language (de→en→fr)."""
        if source == target:
            return Route(source, target, ())
        if (source, target) in self.by_pair:
            return Route(source, target, (self.by_pair[source, target],))
        for pivot in self.known_languages:
            if (source, pivot) in self.by_pair and (pivot, target) in self.by_pair:
                return Route(source, target, (self.by_pair[source, pivot], self.by_pair[pivot, target]))
        pairs = ", ".join(f"{m.source}-{m.target}" for m in self.models)
        raise UnknownLanguagePair(f"no model translates {source}-{target}, directly or through a common language; "
                                  f"served: {pairs}")

    def targets_of(self, source: str) -> list[str]:
        """Every language `source` translates into, directly or through a pivot."""
        reachable = set()
        for target in self.known_languages:
            try:
                if target != source and self.route(source, target):
                    reachable.add(target)
            except UnknownLanguagePair:
                pass
        return sorted(reachable)

    @property
    def source_languages(self) -> list[str]:
        return sorted({m.source for m in self.models})

    @property
    def known_languages(self) -> list[str]:
        """Every language the service reads or writes."""
        return sorted({m.source for m in self.models} | {m.target for m in self.models})

    def languages(self) -> list[dict]:
        """LibreTranslate's /languages shape: every language with the targets it translates into."""
        return [{"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": self.targets_of(code)}
                for code in self.known_languages]
