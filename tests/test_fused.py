"""The fused decoder kernels: their hand-written backward, and that the model trains the same with or without them."""
import pytest
import torch

from seq2seq.batching import collate
from seq2seq.config import ModelConfig
from seq2seq.model import build_model, fused
from seq2seq.model.pooled import forget_pool
from seq2seq.step import token_loss_sum
from seq2seq.tokenizer import PAD

needs_kernels = pytest.mark.skipif(fused.library() is None, reason="no C++ compiler to build the fused kernels")


@needs_kernels
def test_each_fused_kernel_s_backward_matches_finite_differences():
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64, requires_grad=True)
    for kind, gates in (("lstm", 4), ("sru", 4), ("qrnn", 3)):
        step = lambda g, c, kind=kind: fused.GatedCellFunction.apply(g, c, kind)  # noqa: E731
        assert torch.autograd.gradcheck(step, (torch.randn(5, gates * 7, **f64), torch.randn(5, 7, **f64))), kind
    checks = {
        fused.GRUCellFunction: (torch.randn(5, 3 * 7, **f64), torch.randn(5, 3 * 7, **f64), torch.randn(5, 7, **f64)),
        # 2 beams per sentence (K = 2): the query's rows share their sentence's keys
        fused.AdditiveScoreFunction: (torch.randn(3, 6, 5, **f64), torch.randn(3, 2, 5, **f64),
                                      torch.randn(5, **f64)),
    }
    for function, inputs in checks.items():
        assert torch.autograd.gradcheck(function.apply, inputs), function.__name__
    lengths = torch.tensor([4, 1, 3])
    for reverse in (False, True):
        pool = lambda z, f, reverse=reverse: fused.ForgetPoolFunction.apply(z, f, lengths, reverse)  # noqa: E731
        assert torch.autograd.gradcheck(pool, (torch.randn(3, 4, 5, **f64), torch.rand(3, 4, 5, **f64)))
    targets = torch.tensor([3, PAD, 0, 6])  # a padding row among them
    loss = lambda x: fused.SmoothedCrossEntropyFunction.apply(x, targets, 0.1, PAD)  # noqa: E731
    assert torch.autograd.gradcheck(loss, (torch.randn(4, 7, **f64),))


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_fused_loss_is_torch_s_label_smoothed_cross_entropy_without_the_padding(dtype, smoothing):
    """The same summed value and gradient as F.cross_entropy on the logits made float, over a vocabulary the
    size of a real one (rows longer than a vector register many times over), with padding rows left out."""
    torch.manual_seed(0)
    logits = (4 * torch.randn(37, 8000)).to(dtype).requires_grad_(True)
    targets = torch.randint(0, 8000, (37,))
    targets[::5] = PAD
    results = []
    for loss_of in (lambda x: torch.nn.functional.cross_entropy(x.float(), targets, ignore_index=PAD,
                                                                label_smoothing=smoothing, reduction="sum"),
                    lambda x: fused.smoothed_cross_entropy_sum(x, targets, smoothing, PAD)):
        loss = loss_of(logits)
        (gradient,) = torch.autograd.grad(0.25 * loss, logits)
        results.append((loss.detach(), gradient.float()))
    (reference, reference_gradient), (ours, our_gradient) = results
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-3)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-3  # of gradients up to 0.25; bf16 keeps 8 bits
    torch.testing.assert_close(our_gradient, reference_gradient, rtol=0, atol=tolerance)
    assert torch.all(our_gradient[::5] == 0)


def _forget_pool_reference(z, f, lengths, reverse):
    """The recurrence written out sequence by sequence, step by step."""
    c = torch.zeros_like(z)
    for b, length in enumerate(lengths.tolist()):
        state = torch.zeros(z.size(2), dtype=z.dtype)
        for t in (reversed(range(length)) if reverse else range(length)):
            state = f[b, t] * state + (1 - f[b, t]) * z[b, t]
            c[b, t] = state
    return c


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kernels", ["fused", "eager"])
def test_forget_pooling_runs_each_sequence_within_its_length_with_the_reference_s_gradients(reverse, kernels):
    if kernels == "fused" and fused.library() is None:
        pytest.skip("no C++ compiler to build the fused kernels")
    torch.manual_seed(0)
    z, f = torch.randn(3, 6, 8, requires_grad=True), torch.rand(3, 6, 8, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    weights = torch.randn(3, 6, 8)  # a loss that weighs every output differently
    results = []
    for pool in (forget_pool, _forget_pool_reference):
        z.grad = f.grad = None
        if kernels == "eager" and pool is forget_pool:
            with fused.disabled():
                c = pool(z, f, lengths, reverse)
        else:
            c = pool(z, f, lengths, reverse)
        (c * weights).sum().backward()
        results.append((c.detach(), z.grad.clone(), f.grad.clone()))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
    assert torch.all(results[0][0][1, 2:] == 0) and torch.all(results[0][1][1, 2:] == 0)  # padding: 0, no gradient


def _loss_and_gradients(model, batch, dtype):
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    loss = token_loss_sum(logits, batch.tgt_out, 0.1)
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters()]


@needs_kernels
@pytest.mark.parametrize("rnn,attention", [("lstm", "bahdanau"), ("gru", "bahdanau"), ("lstm", "general"),
                                            ("sru", "bahdanau"), ("qrnn", "bahdanau")])
def test_the_fused_decoder_gives_the_eager_path_s_loss_and_gradients(rnn, attention):
    """In fp32 the two agree to float rounding. In bf16 they round differently (the fused kernels compute in
    float and round once), so there the fused gradients must be about as close to the fp32 ones as the eager
    path's are: within twice its error plus 1% (bf16 keeps 8 bits; a wrong formula is off by its whole size)."""
    torch.manual_seed(0)
    config = ModelConfig(embedding_size=16, encoder_hidden=12, decoder_hidden=20, dropout=0.0, rnn=rnn,
                         attention=attention, decoder_layers=2)
    model = build_model(config, 50, 60)
    batch = collate([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], [[7, 8, 9], [10, 11, 12, 13, 14, 15], [16]])
    names = ["loss", *(name for name, _ in model.named_parameters())]
    fused_fp32, fused_bf16 = (_loss_and_gradients(model, batch, dtype) for dtype in (None, torch.bfloat16))
    with fused.disabled():
        assert not fused.applies(torch.zeros(1))
        eager_fp32, eager_bf16 = (_loss_and_gradients(model, batch, dtype) for dtype in (None, torch.bfloat16))
    for name, ours, eager in zip(names, fused_fp32, eager_fp32):
        assert torch.allclose(ours, eager, atol=1e-5, rtol=1e-4), name
    for name, ours, eager, exact in zip(names, fused_bf16, eager_bf16, fused_fp32):
        ours_error, eager_error = (ours - exact).norm(), (eager - exact).norm()
        assert ours_error <= 2 * eager_error + 0.01 * exact.norm(), name


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
