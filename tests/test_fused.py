"""The fused decoder kernels: their hand-written backward, and that the model trains the same with or without them."""
import pytest
import torch

from seq2seq.batching import collate
from seq2seq.config import ModelConfig
from seq2seq.model import build_model, fused
from seq2seq.step import token_loss_sum

needs_kernels = pytest.mark.skipif(fused.library() is None, reason="no C++ compiler to build the fused kernels")


@needs_kernels
def test_each_fused_kernel_s_backward_matches_finite_differences():
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64, requires_grad=True)
    checks = {
        fused.LSTMCellFunction: (torch.randn(5, 4 * 7, **f64), torch.randn(5, 7, **f64)),
        fused.GRUCellFunction: (torch.randn(5, 3 * 7, **f64), torch.randn(5, 3 * 7, **f64), torch.randn(5, 7, **f64)),
        # 2 beams per sentence (K = 2): the query's rows share their sentence's keys
        fused.AdditiveScoreFunction: (torch.randn(3, 6, 5, **f64), torch.randn(3, 2, 5, **f64),
                                      torch.randn(5, **f64)),
    }
    for function, inputs in checks.items():
        assert torch.autograd.gradcheck(function.apply, inputs), function.__name__


def _loss_and_gradients(model, batch, dtype):
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    loss = token_loss_sum(logits.float(), batch.tgt_out, 0.1)
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters()]


@needs_kernels
@pytest.mark.parametrize("rnn,attention", [("lstm", "bahdanau"), ("gru", "bahdanau"), ("lstm", "general")])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_the_fused_decoder_gives_the_eager_path_s_loss_and_gradients(rnn, attention, dtype):
    torch.manual_seed(0)
    config = ModelConfig(embedding_size=16, encoder_hidden=12, decoder_hidden=20, dropout=0.0, rnn=rnn,
                         attention=attention, decoder_layers=2)
    model = build_model(config, 50, 60)
    batch = collate([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], [[7, 8, 9], [10, 11, 12, 13, 14, 15], [16]])
    fused_results = _loss_and_gradients(model, batch, dtype)
    with fused.disabled():
        assert not fused.applies(torch.zeros(1))
        eager_results = _loss_and_gradients(model, batch, dtype)
    tolerance = dict(atol=1e-5, rtol=1e-4) if dtype is None else dict(atol=0.02, rtol=0.05)
    for (name, _), ours, eager in zip([("loss", None), *model.named_parameters()], fused_results, eager_results):
        assert torch.allclose(ours, eager, **tolerance), name


def test_without_a_compiler_the_decoder_runs_the_eager_path(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))  # an empty cache: it must compile
    fused.library.cache_clear()
    try:
        assert fused.library() is None and not fused.applies(torch.zeros(1))
        assert "using the eager PyTorch path" in capsys.readouterr().err
        model = build_model(ModelConfig(embedding_size=16, encoder_hidden=12, decoder_hidden=20), 50, 60)
        batch = collate([[5, 6, 7]], [[7, 8]])
        assert model(batch.src, batch.src_lengths, batch.tgt_in).shape == (1, batch.tgt_in.size(1), 60)
    finally:
        fused.library.cache_clear()  # the next caller builds (or finds) the real library again
