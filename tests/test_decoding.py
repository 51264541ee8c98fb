"""Greedy and beam search, the Translator, and the translate / evaluate / score / average commands."""
import json
from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager

import pytest
import sacrebleu
import torch

from seq2seq.batching import collate
from seq2seq.config import DecodeConfig
from seq2seq.corpus import read_lines
from seq2seq.errors import UserError
from seq2seq.model import fused
from seq2seq.precision import model_for_decoding
from seq2seq.search import beam_search, best_tokens, greedy_search, top_k
from seq2seq.tokenizer import EOS, PAD, UNK
from seq2seq.translate import Translator
from tests.conftest import MULTI30K, run_cli


@pytest.fixture(scope="module")
def translator(tiny_run: Path) -> Translator:
    return Translator(tiny_run / "checkpoints/best.pt", device="cpu")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return read_lines(MULTI30K / "val.de.gz")[:40]


def _batch(translator: Translator, sentences: list[str]):
    ids = [translator.loaded.src_tokenizer.encode(s) for s in sentences]
    return collate(ids, [[] for _ in ids])


@pytest.mark.parametrize("beam_size", [1, 5])
def test_the_fused_kernels_translate_as_the_eager_path(translator, sentences, beam_size):
    """The same translations and scores with the C++ kernels (cells, attention, top k) as without them."""
    if fused.library() is None:
        pytest.skip("no C++ compiler to build the fused kernels")
    options = translator.options(beam_size=beam_size)
    ours = translator.translate(sentences, options)
    with fused.disabled():
        eager = translator.translate(sentences, options)
    assert [t.text for t in ours] == [t.text for t in eager]
    assert [t.score for t in ours] == pytest.approx([t.score for t in eager], abs=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_one_equals_greedy(translator, sentences, alpha):
    batch = _batch(translator, sentences)
    model = translator.loaded.model
    greedy = greedy_search(model, batch.src, batch.src_lengths, DecodeConfig(beam_size=1, length_penalty=alpha))
    beam = beam_search(model, batch.src, batch.src_lengths, DecodeConfig(beam_size=1, length_penalty=alpha))
    for g, b in zip(greedy, beam):
        assert g[0].ids == b[0].ids
        assert g[0].score == pytest.approx(b[0].score, abs=1e-4)
        assert torch.allclose(g[0].attention, b[0].attention, atol=1e-4)


def test_beam_finds_more_probable_translations_than_greedy(translator, sentences):
    batch = _batch(translator, sentences)
    model = translator.loaded.model
    greedy = greedy_search(model, batch.src, batch.src_lengths, DecodeConfig(beam_size=1, length_penalty=0))
    beam = beam_search(model, batch.src, batch.src_lengths, DecodeConfig(beam_size=5, length_penalty=0))
    greedy_total = sum(h[0].score for h in greedy)
    beam_total = sum(h[0].score for h in beam)
    assert beam_total > greedy_total
    # Not every sentence: greedy's prefix can fall out of the 5 best at a later step and be pruned (the tiny
    # model does so on 5 of these 40; at beam 10 on 1), which is beam search working as designed.
    assert sum(b[0].score >= g[0].score - 1e-4 for g, b in zip(greedy, beam)) >= 0.8 * len(sentences)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_heuristic_stopping_finds_what_exhaustive_finds(translator, sentences, alpha):
    batch = _batch(translator, sentences)
    model = translator.loaded.model
    found = {stopping: beam_search(model, batch.src, batch.src_lengths,
                                   DecodeConfig(beam_size=5, length_penalty=alpha, stopping=stopping))
             for stopping in ("heuristic", "exhaustive")}
    pairs = list(zip(found["heuristic"], found["exhaustive"]))
    if alpha == 0:  # log-probabilities only fall, so stopping early loses nothing
        assert all(h[0].ids == e[0].ids for h, e in pairs)
    assert sum(e[0].score for _, e in pairs) >= sum(h[0].score for h, _ in pairs) - 1e-4
    assert sum(h[0].ids == e[0].ids for h, e in pairs) >= 0.9 * len(pairs)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_every_n_best_score_is_the_models_own_probability_of_that_output(translator, sentences, alpha):
    """Beam search's bookkeeping (parents, finished beams, rows leaving the batch) against teacher forcing."""
    model = translator.loaded.model
    batch = _batch(translator, sentences[:16])
    options = DecodeConfig(beam_size=4, n_best=4, length_penalty=alpha)
    results = beam_search(model, batch.src, batch.src_lengths, options)
    for i, hyps in enumerate(results):
        outputs = [h.ids for h in hyps]
        forced = collate([batch.src[i, : batch.src_lengths[i] - 1].tolist()] * len(outputs), outputs)
        with torch.inference_mode():
            log_probs = torch.log_softmax(model(forced.src, forced.src_lengths, forced.tgt_in), dim=-1)
        picked = log_probs.gather(2, forced.tgt_out.unsqueeze(2)).squeeze(2).masked_fill(forced.tgt_out == PAD, 0)
        lengths = torch.tensor([len(ids) + 1 for ids in outputs])
        expected = picked.sum(1) / ((5.0 + lengths) / 6.0) ** alpha
        assert torch.allclose(torch.tensor([h.score for h in hyps]), expected, atol=1e-3)


def test_n_best_lists_are_sorted_distinct_and_complete(translator, sentences):
    results = translator.translate(sentences, translator.options(beam_size=5, n_best=5))
    for translation in results:
        hyps = [translation, *translation.alternatives]
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.target_pieces) for h in hyps}) == 5


def test_batched_and_one_by_one_translation_agree(translator, sentences):
    options = translator.options(beam_size=4)
    together = [t.text for t in translator.translate(sentences[:12], options)]
    alone = [translator.translate([s], options)[0].text for s in sentences[:12]]
    assert together == alone


def test_batches_hold_the_token_budget_divided_by_the_beam(tiny_run, sentences, monkeypatch):
    import seq2seq.translate

    source_tokens = []
    search = seq2seq.translate.search

    def search_and_record(model, src, lengths, options, output_layer):
        source_tokens.append(src.numel())  # padded source tokens of the batch
        return search(model, src, lengths, options, output_layer)

    monkeypatch.setattr(seq2seq.translate, "search", search_and_record)
    translator = Translator(tiny_run / "checkpoints/best.pt", device="cpu", batch_tokens=500)
    for beam_size, budget in ((1, 500), (5, 100)):
        source_tokens.clear()
        translator.translate(sentences, translator.options(beam_size=beam_size))
        assert len(source_tokens) > 1 and max(source_tokens) <= budget


def test_input_order_is_preserved(translator, sentences):
    options = translator.options(beam_size=3)
    forward = [t.text for t in translator.translate(sentences, options)]
    backward = [t.text for t in translator.translate(sentences[::-1], options)]
    assert backward == forward[::-1]
    assert len(set(forward)) > len(forward) // 2  # real, different translations


@pytest.mark.parametrize("beam_size", [1, 4])
def test_length_limits_hold(translator, sentences, beam_size):
    short = translator.translate(sentences, translator.options(beam_size=beam_size, max_length_ratio=0.5,
                                                               max_length_extra=0))
    for src, translation in zip(sentences, short):
        source_pieces = len(translator.loaded.src_tokenizer.encode(src))
        assert len(translation.target_pieces) <= int(source_pieces * 0.5)
    long = translator.translate(sentences, translator.options(beam_size=beam_size, min_length=15))
    assert all(len(t.target_pieces) >= 15 for t in long)


def test_no_unk_when_asked(translator):
    odd = ["Ein ☃ mit 中文 Zeichen ✈ und ♞.", "Der Ω-Hund ☂ läuft ⚽."]
    batch = _batch(translator, odd)
    for beam_size in (1, 3):
        results = beam_search(translator.loaded.model, batch.src, batch.src_lengths,
                              DecodeConfig(beam_size=beam_size, block_unk=True))
        assert all(UNK not in h.ids and EOS not in h.ids for hyps in results for h in hyps)


def test_empty_and_whitespace_lines_give_empty_translations(translator):
    results = translator.translate(["", "   ", "\t", "Ein Hund läuft.", ""], translator.options(beam_size=3))
    assert [r.text for r in results][:3] == ["", "", ""] and results[4].text == ""
    assert results[3].text


def test_attention_matrix_matches_pieces(translator, sentences):
    for beam_size in (1, 5):
        result = translator.translate(sentences[:5], translator.options(beam_size=beam_size), with_attention=True)
        for t in result:
            assert t.attention.shape == (len(t.target_pieces) + 1, len(t.source_pieces) + 1)
            assert torch.allclose(t.attention.sum(1), torch.ones(t.attention.size(0)), atol=1e-4)


def test_cli_translate_beam_n_best_and_attention_plots(tiny_run, tmp_path):
    result = run_cli("translate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--beam-size", "4",
                     "--n-best", "2", "--attention-plot", str(tmp_path / "plots"),
                     stdin="Ein Hund läuft.\n\nZwei Männer spielen Fußball.\n")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["1", "1", "2", "3", "3"]  # an empty line has one, empty, translation
    assert float(rows[0][1]) >= float(rows[1][1]) and rows[0][2] != rows[1][2]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["000001.png", "000003.png"]


def test_cli_translate_rejects_bad_decoding_options(tiny_run):
    result = run_cli("translate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--beam-size", "2",
                     "--n-best", "3", stdin="Hallo\n")
    assert result.returncode == 2 and "n_best" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_evaluate_json_report(tiny_run, tmp_path):
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("\n".join(read_lines(MULTI30K / "val.de.gz")[:30]) + "\n", encoding="utf-8")
    ref.write_text("\n".join(read_lines(MULTI30K / "val.en.gz")[:30]) + "\n", encoding="utf-8")
    result = run_cli("evaluate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--src", str(src),
                     "--ref", str(ref), "--beam-size", "3", "--json", "--output", str(tmp_path / "hyp.en"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for metric in ("bleu", "chrf", "ter"):
        assert 0 <= report[metric]["score"] <= 200 and report[metric]["signature"] in report["signature"][metric]
    assert report["bleu"]["score"] > 1 and report["sentences"] == 30 and report["seconds"] > 0
    assert len((tmp_path / "hyp.en").read_text(encoding="utf-8").splitlines()) == 30


def test_evaluate_rejects_mismatched_files(tiny_run, tmp_path):
    (tmp_path / "a").write_text("eins\nzwei\n")
    (tmp_path / "b").write_text("one\n")
    result = run_cli("evaluate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--src", str(tmp_path / "a"),
                     "--ref", str(tmp_path / "b"), "--metrics", "bleu")
    assert result.returncode == 2 and "lines" in result.stderr
    result = run_cli("evaluate", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--src", str(tmp_path / "a"),
                     "--ref", str(tmp_path / "a"), "--metrics", "bleu,meteor")
    assert result.returncode == 2 and "--metrics" in result.stderr


def test_score_prefers_the_model_translation_to_a_wrong_one(tiny_run, translator, tmp_path):
    sources = ["Ein Hund läuft.", "Zwei Männer spielen Fußball."]
    own = [t.text for t in translator.translate(sources, translator.options(beam_size=1))]
    (tmp_path / "src").write_text("\n".join(sources * 2) + "\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("\n".join(own + own[::-1]) + "\n", encoding="utf-8")
    result = run_cli("score", "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--src", str(tmp_path / "src"),
                     "--tgt", str(tmp_path / "tgt"))
    assert result.returncode == 0, result.stderr
    totals = [float(line.split("\t")[0]) for line in result.stdout.splitlines()]
    assert len(totals) == 4 and totals[0] > totals[2] and totals[1] > totals[3]
    greedy = translator.translate(sources, translator.options(beam_size=1, length_penalty=0))
    assert totals[0] == pytest.approx(greedy[0].score, abs=1e-3)  # forced decoding agrees with search


def test_average_checkpoints(tiny_run, tmp_path):
    from seq2seq.checkpoint import read_checkpoint

    steps = sorted((tiny_run / "checkpoints").glob("step_*.pt"))
    assert len(steps) == 2
    result = run_cli("average", str(tiny_run / "checkpoints"), "--output", str(tmp_path / "avg.pt"))
    assert result.returncode == 0, result.stderr
    payloads = [read_checkpoint(p) for p in steps]
    averaged = read_checkpoint(tmp_path / "avg.pt")
    name = "encoder.embedding.weight"
    expected = (payloads[0]["model"][name] + payloads[1]["model"][name]) / 2
    assert torch.allclose(averaged["model"][name], expected, atol=1e-6)
    assert averaged["train_state"] is None
    result = run_cli("translate", "--checkpoint", str(tmp_path / "avg.pt"), stdin="Ein Hund läuft.\n")
    assert result.returncode == 0 and result.stdout.strip()


def test_int8_quantized_model_translates_like_the_float_one(tiny_run, translator, sentences):
    quantized = Translator(tiny_run / "checkpoints/best.pt", device="cpu", precision="int8")
    generator = quantized.loaded.model.decoder.generator
    assert generator.weight().dtype == torch.qint8  # the products really run in int8
    options = translator.options(beam_size=1)
    fp32 = [t.text for t in translator.translate(sentences, options)]
    int8 = [t.text for t in quantized.translate(sentences, options)]
    assert sum(a == b for a, b in zip(fp32, int8)) >= 0.6 * len(sentences)
    assert sacrebleu.corpus_bleu(int8, [fp32]).score > 60


def test_bf16_decoding_multiplies_in_bf16_and_translates_like_fp32(tiny_run, translator, sentences):
    bf16 = Translator(tiny_run / "checkpoints/best.pt", device="cpu", precision="bf16")
    output_size = bf16.loaded.model.decoder.output_size
    assert bf16.output_layer(torch.randn(3, output_size)).dtype == torch.bfloat16  # weight stored in bf16
    for beam_size in (1, 4):
        options = translator.options(beam_size=beam_size)
        fp32 = [t.text for t in translator.translate(sentences, options)]
        reduced = bf16.translate(sentences, options, with_attention=True)
        assert sum(a == b.text for a, b in zip(fp32, reduced)) >= 0.6 * len(sentences)
        assert sacrebleu.corpus_bleu([t.text for t in reduced], [fp32]).score > 60
        attention = reduced[0].attention
        assert attention.dtype == torch.float32
        assert torch.allclose(attention.sum(1), torch.ones(len(attention)), atol=0.02)
    assert [t.text for t in translator.translate(sentences, options)] == fp32  # the autocast stays in bf16's calls


def test_int8_is_refused_off_the_cpu_and_unknown_precisions_everywhere(tiny_run):
    model = Translator(tiny_run / "checkpoints/best.pt", device="cpu").loaded.model
    with pytest.raises(UserError, match="CPU only"):
        model_for_decoding(model, "int8", torch.device("cuda"))
    with pytest.raises(UserError, match="unknown precision"):
        model_for_decoding(model, "int4", torch.device("cpu"))
    checkpoint = str(tiny_run / "checkpoints/best.pt")
    new = run_cli("translate", "--checkpoint", checkpoint, "--precision", "int8", "--beam-size", "2",
                  stdin="Ein Hund läuft.\n")
    assert new.returncode == 0 and new.stdout.strip() and "deprecated" not in new.stderr, new.stderr
    old = run_cli("translate", "--checkpoint", checkpoint, "--quantize", "int8", "--beam-size", "2",
                  stdin="Ein Hund läuft.\n")  # the old spelling still works, and says what replaces it
    assert old.returncode == 0 and old.stdout == new.stdout and "use --precision int8" in old.stderr
    both = run_cli("translate", "--checkpoint", checkpoint, "--quantize", "int8", "--precision", "bf16",
                   stdin="Ein Hund läuft.\n")
    assert both.returncode == 2 and "disagree" in both.stderr


def test_the_service_takes_precision_and_the_old_quantize_setting():
    from service.settings import ServiceSettings, settings_from

    assert ServiceSettings(precision="bf16").reduced_precision == "bf16"
    assert ServiceSettings(precision="fp32").reduced_precision is None
    assert settings_from({}, environ={"SEQ2SEQ_QUANTIZE": "int8"}).reduced_precision == "int8"
    with pytest.raises(UserError, match="disagree"):
        settings_from({}, environ={"SEQ2SEQ_QUANTIZE": "int8", "SEQ2SEQ_PRECISION": "bf16"})


def _kernels(kind: str) -> ContextManager:
    """The fused C++ kernels (skipped where they cannot be built) or the eager PyTorch path."""
    if kind == "fused" and fused.library() is None:
        pytest.skip("no C++ compiler to build the fused kernels")
    return nullcontext() if kind == "fused" else fused.disabled()


@pytest.mark.parametrize("kernels", ["fused", "eager"])
@pytest.mark.parametrize("vocab", [8000, 7931, 129, 300])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_block_top_k_gives_torch_topk_values_in_order(vocab, k, kernels):
    """Including a vocabulary that is not a multiple of the block, and a row restricted to one finite entry;
    the fused kernel's log-normaliser is torch's logsumexp."""
    torch.manual_seed(vocab + k)
    scores = torch.randn(37, vocab) * 4
    scores[3] = float("-inf")
    scores[3, vocab - 1] = 0.0  # only the last entry, past the last full block, is allowed
    with _kernels(kernels):
        if kernels == "fused":
            values, ids, log_norm = fused.top_k_log_norm(scores, k)
            torch.testing.assert_close(log_norm, scores.logsumexp(dim=1, keepdim=True))
        else:
            values, ids = top_k(scores, k)
    expected_values, expected_ids = scores.topk(k, dim=1)
    assert torch.equal(values, expected_values)
    assert torch.equal(scores.gather(1, ids), values)
    finite = expected_values.isfinite()
    assert torch.equal(ids[finite], expected_ids[finite])
    assert ids[3, 0] == vocab - 1


@pytest.mark.parametrize("kernels", ["fused", "eager"])
@pytest.mark.parametrize("step, min_length, block_unk", [(0, 0, False), (0, 3, True), (2, 3, False), (4, 0, True)])
@pytest.mark.parametrize("k", [1, 5])
def test_best_tokens_are_the_top_k_of_the_log_softmax_under_the_rules(step, min_length, block_unk, k, kernels):
    """The rules cut the log-probabilities of the full softmax, never renormalise them."""
    torch.manual_seed(step * 10 + k)
    logits = torch.randn(24, 300) * 4
    logits[:, EOS] += 6.0  # often among the best, so the minimum length has to remove it
    logits[:, UNK] += 6.0
    limits = torch.randint(step + 1, step + 3, (24,))  # some rows are at their limit (step + 1), some not
    options = DecodeConfig(beam_size=max(k, 1), min_length=min_length, block_unk=block_unk)
    expected = torch.log_softmax(logits, dim=1)
    at_limit = step + 1 >= limits
    if block_unk:
        expected[:, UNK] = float("-inf")
    if step < min_length:
        expected[~at_limit, EOS] = float("-inf")
    expected[at_limit] = expected[at_limit].masked_fill(torch.arange(300) != EOS, float("-inf"))
    expected_values, _ = expected.topk(k, dim=1)
    with _kernels(kernels):
        values, ids = best_tokens(logits.clone(), k, step, limits, options)
    torch.testing.assert_close(values, expected_values)
    finite = values.isfinite()
    assert torch.equal(expected.gather(1, ids)[finite], expected_values[finite])
    assert bool(at_limit.any()) and torch.equal(ids[at_limit, 0], torch.full((int(at_limit.sum()),), EOS))
