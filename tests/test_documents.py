"""Documents, not sentences: texts are split into sentences, translated as one batch and put back together
with their own whitespace, in the CLI, the native API and the LibreTranslate API alike."""
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seq2seq.documents import translate_documents
from seq2seq.segment import segment
from seq2seq.translate import Translator
from service.app import create_app
from service.models import ModelRegistry
from service.settings import ServiceSettings
from tests.conftest import data_overrides, run_cli

SENTENCES = ["Ein Hund läuft über die Wiese.", "Zwei Männer spielen Fußball im Park.", "Eine Frau liest ein Buch.",
             "Ein kleines Mädchen isst einen Apfel."]
PARAGRAPH = f"{SENTENCES[0]} {SENTENCES[1]}\n\n  {SENTENCES[2]}  {SENTENCES[3]}\n"


def test_segmentation_keeps_sentences_order_and_every_character():
    text = "  Er sagte: \"Ich bin da.\" Und dann? Am 3. Mai kam er.\r\n\n\tNeu hier? Ja!  \n"
    parts = segment(text, "de")
    # "Am 3. Mai" is one sentence; its number is a protected span, kept between the words around it
    assert parts.sentences == ['Er sagte: "Ich bin da."', "Und dann?", "Am", "Mai kam er.", "Neu hier?", "Ja!"]
    assert parts.join(parts.sentences) == text
    assert parts.gaps[3] == " 3. " and parts.gaps[4] == "\r\n\n\t"  # between paragraphs: exactly as sent
    assert segment("Sie fahren durch eine Landschaft. 2 blonde Mädchen sitzen.", "de").sentences == [
        "Sie fahren durch eine Landschaft.", "blonde Mädchen sitzen."]  # a new sentence that starts with a count
    assert parts.join(["<s>"] * 6) == "  <s> <s> <s> 3. <s>\r\n\n\t<s> <s>  \n"


def test_a_long_sentence_is_cut_at_clauses_then_words_never_dropped():
    fits = lambda s: len(s) <= 40  # noqa: E731
    clauses = "Der Hund, der im Garten spielt, läuft schnell; die Katze schläft: sie träumt von Mäusen und Vögeln."
    parts = segment(clauses, "de", fits)
    assert all(fits(s) for s in parts.sentences) and len(parts.notes) == 1
    assert parts.sentences[0] == "Der Hund, der im Garten spielt,"  # whole clauses where they fit
    assert parts.join(parts.sentences) == clauses
    word = "x" * 150  # no space anywhere: cut inside the word, still nothing lost
    assert segment(word, "de", fits).join(segment(word, "de", fits).sentences) == word


def test_paragraphs_translate_as_their_sentences_do(checkpoint):
    translator = Translator(checkpoint, device="cpu")
    alone = [t.text for t in translator.translate(SENTENCES)]
    document = translate_documents(translator, [PARAGRAPH, "", "   "])
    assert document[0].text == f"{alone[0]} {alone[1]}\n\n  {alone[2]}  {alone[3]}\n"
    assert [t.text for t in document[0].sentences] == alone and document[0].source_sentences == SENTENCES
    assert [d.text for d in document[1:]] == ["", "   "]
    unsplit = translate_documents(translator, [PARAGRAPH], split=False)[0]
    assert len(unsplit.sentences) == 1  # --no-split: the line is one sentence, as it is


def test_the_service_never_hands_the_model_a_sentence_over_its_limit(registry):
    """split: false keeps a text one sentence, but one longer than the model's limit is still cut in parts
    (with a warning), so a single request cannot make the decoder run for thousands of steps."""
    long_text = "Ein Hund läuft über die Wiese, und eine Frau liest ein Buch, " * 30
    with TestClient(create_app(ServiceSettings(), registry)) as client:
        body = client.post("/v1/translate", json={"text": long_text, "split": False, "beam_size": 1}).json()
        translation = body["translations"][0]
        assert len(translation["sentences"]) > 1 and "parts" in translation["warnings"][0]
        assert "".join(s["source"] for s in translation["sentences"]).replace(" ", "") == long_text.replace(" ", "")


def test_cli_native_and_libretranslate_agree_on_a_paragraph(checkpoint, tmp_path):
    paragraph = f"{SENTENCES[0]} {SENTENCES[1]} {SENTENCES[2]}"
    cli = run_cli("translate", "--checkpoint", checkpoint, "--beam-size", "3",
                  stdin=paragraph + "\n" + SENTENCES[3] + "\n")
    assert cli.returncode == 0, cli.stderr
    expected = cli.stdout.splitlines()
    registry = ModelRegistry.load({"de-en": checkpoint}, device="cpu")
    with TestClient(create_app(ServiceSettings(), registry)) as client:
        native = client.post("/v1/translate", json={"text": [paragraph, SENTENCES[3]], "beam_size": 3,
                                                    "return_attention": True}).json()["translations"]
        assert [t["text"] for t in native] == expected
        sentences = native[0]["sentences"]
        assert [s["source"] for s in sentences] == SENTENCES[:3]
        assert all(len(s["attention"]) == len(s["target_pieces"]) + 1 for s in sentences)
        assert "sentences" not in native[1] and native[1]["attention"]  # one sentence: the shape it always had
        libre = client.post("/translate", json={"q": paragraph, "source": "de", "target": "en"}).json()
        beam5 = run_cli("translate", "--checkpoint", checkpoint, stdin=paragraph + "\n").stdout.splitlines()[0]
        assert libre["translatedText"] == beam5
    plots = tmp_path / "plots"
    plotted = run_cli("translate", "--checkpoint", checkpoint, "--attention-plot", str(plots), stdin=paragraph)
    assert plotted.returncode == 0
    assert sorted(p.name for p in plots.iterdir()) == ["000001-001.png", "000001-002.png", "000001-003.png"]


def test_text_in_the_target_language_comes_back_unchanged(registry):
    english = "Two young men are playing football in the park while their friends watch."
    with TestClient(create_app(ServiceSettings(), registry)) as client:
        libre = client.post("/translate", json={"q": [english, SENTENCES[0]], "source": "auto", "target": "en"}).json()
        assert libre["translatedText"][0] == english
        assert [d["language"] for d in libre["detectedLanguage"]] == ["en", "de"]
        assert libre["translatedText"][1] != SENTENCES[0]
        native = client.post("/v1/translate", json={"text": english, "source": "auto", "target": "en"}).json()
        assert native["translations"][0]["text"] == english and native["model"] == "en-en"
        same = client.post("/v1/translate", json={"text": SENTENCES[0], "source": "de", "target": "de"}).json()
        assert same["translations"][0]["text"] == SENTENCES[0]
        detected = client.post("/detect", json={"q": [english, SENTENCES[1]]}).json()
        assert [d[0]["language"] for d in detected] == ["en", "de"]
        assert all({c["language"] for c in d} == {"de", "en"} for d in detected)
        spanish = client.post("/detect", data={"q": "El perro corre por el parque con su dueño."}).json()
        assert spanish[0]["confidence"] < 50  # in no served language: no false certainty


def test_a_10000_character_text_is_translated_whole_or_refused(registry):
    text = " ".join(SENTENCES * 76)  # 10,031 characters, 304 sentences
    assert len(text) >= 10_000
    with TestClient(create_app(ServiceSettings(max_sentences=320), registry)) as client:
        body = client.post("/v1/translate", json={"text": text, "beam_size": 1}).json()
        assert len(body["translations"][0]["sentences"]) == 304  # every sentence translated, none cut
    with TestClient(create_app(ServiceSettings(max_sentences=100), registry)) as client:
        refused = client.post("/v1/translate", json={"text": text})
        assert refused.status_code == 413 and "304 sentences" in refused.json()["detail"]
        libre = client.post("/translate", json={"q": text, "source": "de", "target": "en"})
        assert libre.status_code == 400 and "at most 100" in libre.json()["error"]
        too_long = client.post("/translate", json={"q": [text, text], "source": "de", "target": "en"})
        assert too_long.status_code == 400 and "characters" in too_long.json()["error"]


@pytest.fixture(scope="module")
def en_fr_checkpoint(tmp_path_factory) -> str:
    """A small English→French model (40 steps): the pivot test needs a second pair, not a good one."""
    run_dir = tmp_path_factory.mktemp("en_fr")
    overrides = [x for o in [*data_overrides(), "data.src_lang=en", "data.tgt_lang=fr", "train.max_steps=40"]
                 for x in ("--set", o)]
    result = run_cli("train", "configs/tiny.yaml", "--run-dir", str(run_dir), *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    return str(Path(run_dir) / "checkpoints/best.pt")


def test_pivot_through_a_common_language(checkpoint, en_fr_checkpoint):
    registry = ModelRegistry.load({"de-en": checkpoint, "en-fr": en_fr_checkpoint}, device="cpu")
    english = [t.text for t in Translator(checkpoint, device="cpu").translate(SENTENCES[:2])]
    french = [t.text for t in Translator(en_fr_checkpoint, device="cpu").translate(english)]
    with TestClient(create_app(ServiceSettings(), registry)) as client:
        assert {"code": "de", "name": "German", "targets": ["en", "fr"]} in client.get("/languages").json()
        body = client.post("/v1/translate",
                           json={"text": " ".join(SENTENCES[:2]), "source": "de", "target": "fr"}).json()
        assert body["model"] == "de-en-fr" and body["translations"][0]["text"] == " ".join(french)
        libre = client.post("/translate", json={"q": SENTENCES[0], "source": "de", "target": "fr"}).json()
        assert libre["translatedText"] == french[0]
        assert client.post("/translate", json={"q": "x", "source": "fr", "target": "de"}).status_code == 400
