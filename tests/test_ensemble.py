"""Ensembles: several checkpoints decoded as one, their log-probabilities averaged at every step; models
whose tokenizers or languages differ are refused with one clear line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.batching import collate
from seq2seq.checkpoint import load_model, make_checkpoint, save_checkpoint
from seq2seq.config import Config, DecodeConfig
from seq2seq.ensemble import Ensemble
from seq2seq.errors import UserError
from seq2seq.model import build_model
from seq2seq.search import beam_search, greedy_search
from seq2seq.tokenizer import BOS
from seq2seq.translate import Translator
from tests.conftest import MULTI30K, run_cli

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch im Park.",
             "Kinder spielen Fußball auf einer Wiese.", "Ein Mädchen in einem roten Kleid tanzt."]


@pytest.fixture(scope="module")
def members(tiny_run: Path) -> list[str]:
    """Two checkpoints of one run: different weights, the same tokenizers."""
    return [str(tiny_run / "checkpoints/best.pt"), str(tiny_run / "checkpoints/step_200.pt")]


def _batch(tokenizer, sentences: list[str]):
    ids = [tokenizer.encode(s) for s in sentences]
    return collate(ids, [[] for _ in ids])


def test_one_step_averages_the_members_log_probabilities(members):
    models = [load_model(path).model for path in members]
    ensemble = Ensemble(models)
    batch = _batch(load_model(members[0]).src_tokenizer, SENTENCES)
    tokens = torch.full((len(SENTENCES),), BOS)
    with torch.inference_mode():
        mean, attention, _ = ensemble.decoder.step(tokens, ensemble.encode(batch.src, batch.src_lengths))
        alone = [m.decoder.step(tokens, m.encode(batch.src, batch.src_lengths)) for m in models]
    expected = torch.stack([logits.log_softmax(dim=1) for logits, _, _ in alone]).mean(0)
    assert torch.allclose(mean, expected, atol=1e-5)
    assert torch.allclose(attention, torch.stack([w for _, w, _ in alone]).mean(0), atol=1e-6)
    assert not torch.allclose(alone[0][0].log_softmax(1), alone[1][0].log_softmax(1), atol=1e-3)  # they differ


def test_a_model_ensembled_with_itself_translates_as_it_does_alone(members):
    model = load_model(members[0])
    batch = _batch(model.src_tokenizer, SENTENCES)
    twice = Ensemble([model.model, model.model])
    for search, options in ((greedy_search, DecodeConfig(beam_size=1)), (beam_search, DecodeConfig(beam_size=4))):
        alone = search(model.model, batch.src, batch.src_lengths, options)
        doubled = search(twice, batch.src, batch.src_lengths, options)
        assert [h[0].ids for h in doubled] == [h[0].ids for h in alone]
        assert [h[0].score for h in doubled] == pytest.approx([h[0].score for h in alone], abs=1e-3)


def test_ensemble_beam_one_equals_greedy(members):
    translator = Translator(members, device="cpu")
    batch = _batch(translator.loaded.src_tokenizer, SENTENCES)
    greedy = greedy_search(translator.model, batch.src, batch.src_lengths, DecodeConfig(beam_size=1))
    beam = beam_search(translator.model, batch.src, batch.src_lengths, DecodeConfig(beam_size=1))
    for g, b in zip(greedy, beam):
        assert g[0].ids == b[0].ids
        assert g[0].score == pytest.approx(b[0].score, abs=1e-4)


@pytest.mark.parametrize("precision", [None, "int8", "bf16"])
def test_the_translator_decodes_an_ensemble_in_every_precision(members, precision):
    translations = Translator(members, device="cpu", precision=precision).translate(SENTENCES)
    assert all(t.text.strip() for t in translations)


@pytest.fixture(scope="module")
def foreign(toy_tokenizer, tmp_path_factory) -> str:
    """A checkpoint of the same language pair with other SentencePiece models (the toy tokenizer)."""
    config = Config.model_validate({"data": {"src_lang": "de", "tgt_lang": "en", "train": "x", "valid": "y"},
                                    "train": {"max_steps": 1},
                                    "model": {"embedding_size": 16, "encoder_hidden": 16, "decoder_hidden": 32}})
    model = build_model(config.model, toy_tokenizer.vocab_size, toy_tokenizer.vocab_size)
    path = tmp_path_factory.mktemp("foreign") / "foreign.pt"
    save_checkpoint(make_checkpoint(config, model, toy_tokenizer, toy_tokenizer), path)
    return str(path)


def test_members_with_other_tokenizers_are_refused(members, foreign):
    with pytest.raises(UserError, match="another source tokenizer"):
        Translator([members[0], foreign], device="cpu")


def test_the_cli_translates_and_evaluates_with_an_ensemble_and_refuses_a_mismatch(members, foreign):
    flags = [x for path in members for x in ("--checkpoint", path)]
    translated = run_cli("translate", *flags, "--beam-size", "3", stdin="\n".join(SENTENCES) + "\n")
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert len(translated.stdout.splitlines()) == len(SENTENCES)
    evaluated = run_cli("evaluate", *flags, "--src", str(MULTI30K / "val.de.gz"), "--ref", str(MULTI30K / "val.en.gz"),
                        "--metrics", "bleu", "--json", "--beam-size", "1")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert '"checkpoint": [' in evaluated.stdout
    refused = run_cli("translate", "--checkpoint", members[0], "--checkpoint", foreign, stdin="Hallo.\n")
    assert refused.returncode == 2
    assert "another source tokenizer" in refused.stderr and "Traceback" not in refused.stderr


def test_the_service_serves_an_ensemble_and_answers_as_the_library_does(members, foreign):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.models import ModelRegistry
    from service.settings import ServiceSettings

    registry = ModelRegistry.load({"de-en": "+".join(members)}, device="cpu")
    with TestClient(create_app(ServiceSettings(), registry)) as client:
        response = client.post("/v1/translate", json={"text": SENTENCES, "source": "de", "target": "en",
                                                      "beam_size": 3})
    assert response.status_code == 200, response.text
    ensemble = Translator(members, device="cpu")
    expected = ensemble.translate(SENTENCES, ensemble.options(beam_size=3))
    assert [t["text"] for t in response.json()["translations"]] == [t.text for t in expected]
    with pytest.raises(UserError, match="another source tokenizer"):
        ModelRegistry.load({"de-en": f"{members[0]}+{foreign}"}, device="cpu")
