"""Shapes, masks and the wiring of every encoder/attention/decoder combination."""
import pytest
import torch

from seq2seq.batching import collate
from seq2seq.config import ModelConfig
from seq2seq.model import build_model
from seq2seq.model.attention import build_attention
from seq2seq.model.dropout import ByteDropout
from seq2seq.tokenizer import PAD
from seq2seq.train import token_loss_sum

V_SRC, V_TGT = 50, 60


def toy_batch():
    return collate([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], [[7, 8, 9], [10, 11, 12, 13, 14, 15], [16]])


def small_config(**changes) -> ModelConfig:
    values = dict(embedding_size=16, encoder_hidden=12, decoder_hidden=20, dropout=0.0)
    values.update(changes)
    return ModelConfig(**values)


@pytest.mark.parametrize("kind", ["bahdanau", "general", "dot"])
def test_attention_sums_to_one_and_ignores_padding(kind):
    torch.manual_seed(0)
    attention = build_attention(kind, 8, 8)
    memory = torch.randn(3, 5, 8)  # (B, S, D)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    context, weights = attention(torch.randn(3, 8), attention.prepare_keys(memory), memory, mask)
    assert context.shape == (3, 8) and weights.shape == (3, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    # The context ignores whatever sits in padded positions.
    noisy = memory.clone()
    noisy[~mask] = 1e3
    context2, _ = attention(torch.randn(3, 8).copy_(torch.zeros(3, 8)), attention.prepare_keys(noisy), noisy, mask)
    context1, _ = attention(torch.zeros(3, 8), attention.prepare_keys(memory), memory, mask)
    assert torch.allclose(context1, context2, atol=1e-5)


@pytest.mark.parametrize("kind", ["bahdanau", "general", "dot"])
def test_beams_sharing_a_sentence_memory_attend_as_if_each_had_a_copy(kind):
    """Beam search keeps the memory once per sentence for its K beams (rows 2b, 2b+1 belong to sentence b)."""
    torch.manual_seed(0)
    attention = build_attention(kind, 8, 8)
    memory = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    queries = torch.randn(6, 8)
    shared = attention(queries, attention.prepare_keys(memory), memory, mask)
    copies = memory.repeat_interleave(2, dim=0)
    copied = attention(queries, attention.prepare_keys(copies), copies, mask.repeat_interleave(2, dim=0))
    for a, b in zip(shared, copied):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_encoder_outputs_are_zero_on_padding():
    model = build_model(small_config(), V_SRC, V_TGT).eval()
    batch = toy_batch()
    memory, (h, c) = model.encoder(batch.src, batch.src_lengths)
    assert memory.shape == (3, batch.src.size(1), 24)  # (B, S, 2·H)
    assert h.shape == c.shape == (2, 3, 12)  # (layers·dirs, B, H)
    assert torch.all(memory[batch.src == PAD] == 0)


@pytest.mark.parametrize("memory_dropout, dropped_share", [(None, 0.5), (0.0, 0.0), (0.25, 0.25)])
def test_memory_dropout_drops_encoder_outputs_at_its_own_rate(memory_dropout, dropped_share):
    """`memory_dropout` unset follows `dropout`; 0 leaves what attention reads intact, as OpenNMT-py does."""
    torch.manual_seed(0)
    model = build_model(small_config(dropout=0.5, memory_dropout=memory_dropout), V_SRC, V_TGT).train()
    src = torch.randint(4, V_SRC, (64, 30))
    memory, _ = model.encoder(src, torch.full((64,), 30))
    assert (memory == 0).float().mean().item() == pytest.approx(dropped_share, abs=0.02)


@pytest.mark.parametrize("activation", ["tanh", "none"])
def test_attentional_vector_is_squashed_only_with_tanh(activation):
    torch.manual_seed(0)
    model = build_model(small_config(attentional_activation=activation, init_range=1.0), V_SRC, V_TGT).eval()
    seen = []
    model.decoder.activation.register_forward_hook(lambda module, inputs, output: seen.append(output))
    batch = toy_batch()
    model(batch.src, batch.src_lengths, batch.tgt_in)
    largest = torch.cat(seen).abs().max().item()
    assert len(seen) == batch.tgt_in.size(1)  # once per target step
    assert (largest < 1) if activation == "tanh" else (largest > 1)


@pytest.mark.parametrize("enc_layers, dec_layers, bidirectional, rnn", [
    (1, 1, True, "lstm"), (2, 1, True, "lstm"), (1, 3, False, "lstm"), (2, 2, True, "gru"), (3, 1, False, "gru"),
    (2, 1, True, "sru"), (1, 2, False, "qrnn"),
])
def test_bridge_maps_any_layer_count(enc_layers, dec_layers, bidirectional, rnn):
    config = small_config(encoder_layers=enc_layers, decoder_layers=dec_layers, bidirectional=bidirectional, rnn=rnn)
    model = build_model(config, V_SRC, V_TGT)
    batch = toy_batch()
    state = model.encode(batch.src, batch.src_lengths)
    assert len(state.h) == dec_layers and all(h.shape == (3, 20) for h in state.h)
    assert (state.c is None) == (rnn == "gru")
    assert state.mask.tolist() == (batch.src != PAD).tolist()


def test_logit_shapes_and_tied_embeddings():
    model = build_model(small_config(tie_embeddings=True), V_SRC, V_TGT)
    batch = toy_batch()
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (3, batch.tgt_in.size(1), V_TGT)
    assert model.decoder.generator.weight is model.decoder.embedding.weight
    untied = build_model(small_config(tie_embeddings=False), V_SRC, V_TGT)
    assert untied.decoder.generator.weight is not untied.decoder.embedding.weight


@pytest.mark.parametrize("rnn", ["lstm", "sru", "qrnn"])
def test_padding_does_not_change_a_sentence_output(rnn):
    """A sentence decodes the same alone and in a batch with longer, padded neighbours."""
    torch.manual_seed(0)
    model = build_model(small_config(rnn=rnn, encoder_layers=2), V_SRC, V_TGT).eval()
    batch = toy_batch()
    alone = collate([[10, 11]], [[10, 11, 12, 13, 14, 15]])
    with torch.no_grad():
        in_batch = model(batch.src, batch.src_lengths, batch.tgt_in)[1]
        single = model(alone.src, alone.src_lengths, alone.tgt_in)[0]
    assert torch.allclose(in_batch, single, atol=1e-5)


@pytest.mark.parametrize("rnn", ["lstm", "gru", "sru", "qrnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("attention", ["bahdanau", "general", "dot"])
def test_every_combination_trains(rnn, bidirectional, attention):
    torch.manual_seed(0)
    enc_hidden = 10 if bidirectional else 20  # dot attention needs encoder output == decoder hidden
    config = small_config(rnn=rnn, bidirectional=bidirectional, attention=attention, encoder_hidden=enc_hidden)
    model = build_model(config, V_SRC, V_TGT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = toy_batch()
    losses = []
    for _ in range(15):
        loss = token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out) / batch.num_tgt_tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_scheduled_sampling_runs_and_changes_inputs():
    torch.manual_seed(0)
    model = build_model(small_config(), V_SRC, V_TGT).eval()
    batch = toy_batch()
    forced = model(batch.src, batch.src_lengths, batch.tgt_in, sampling_prob=0.0)
    sampled = model(batch.src, batch.src_lengths, batch.tgt_in, sampling_prob=1.0)
    assert sampled.shape == forced.shape
    assert torch.allclose(sampled[:, 0], forced[:, 0])  # the first step always sees BOS
    assert not torch.allclose(sampled, forced)


def test_byte_dropout_drops_at_its_rate_and_keeps_the_expectation():
    torch.manual_seed(0)
    dropout = ByteDropout(0.3)
    x = torch.ones(200_000)
    y = dropout(x)
    assert abs(dropout.p - 0.3) <= 1 / 512
    assert abs((y == 0).float().mean().item() - dropout.p) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - dropout.p))]
    assert torch.equal(dropout.eval()(x), x)
    with pytest.raises(ValueError):
        ByteDropout(1.0)
    assert ByteDropout(0.999).p == 255 / 256  # the config allows p < 1; some of every input is kept


@pytest.mark.parametrize("rnn", ["lstm", "gru", "sru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_direct_bridge_starts_each_decoder_layer_from_its_encoder_layer(rnn, layers):
    config = small_config(rnn=rnn, bridge="direct", encoder_layers=layers, decoder_layers=layers,
                          encoder_hidden=10, decoder_hidden=20)
    model = build_model(config, V_SRC, V_TGT).eval()
    batch = toy_batch()
    _, final = model.encoder(batch.src, batch.src_lengths)
    final_h = final[0] if rnn == "lstm" else final  # (layers · 2 directions, B, 10); an SRU's is c alone
    state = model.encode(batch.src, batch.src_lengths)
    for layer in range(layers):
        assert torch.equal(state.h[layer], torch.cat([final_h[2 * layer], final_h[2 * layer + 1]], dim=1))
    assert (state.c is None) == (rnn == "gru")
    assert list(model.bridge.parameters()) == []


def test_direct_bridge_needs_matching_encoder_and_decoder_shapes():
    with pytest.raises(ValueError, match="bridge 'direct'"):
        small_config(bridge="direct", encoder_hidden=12, decoder_hidden=20)
    with pytest.raises(ValueError, match="bridge 'direct'"):
        small_config(bridge="direct", encoder_hidden=10, decoder_hidden=20, decoder_layers=2)


@pytest.mark.parametrize("tie", [False, True])
def test_decoding_output_layer_folds_the_bias_into_the_product_and_keeps_up_with_the_weights(tie):
    model = build_model(small_config(tie_embeddings=tie, embedding_size=20), V_SRC, V_TGT).eval()
    output = torch.randn(7, model.decoder.output_size)
    with torch.inference_mode():
        torch.testing.assert_close(model.decoder.output_layer_for_decoding()(output), model.decoder.generator(output))
    with torch.no_grad():
        model.decoder.generator.bias.add_(1.0)  # as training does between validations
    with torch.inference_mode():
        torch.testing.assert_close(model.decoder.output_layer_for_decoding()(output), model.decoder.generator(output))


def test_decoding_output_layer_follows_a_fused_adam_step():
    """Fused Adam moves the weights without moving their version counters, so nothing may be cached by them."""
    model = build_model(small_config(), V_SRC, V_TGT)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    batch = toy_batch()
    output = torch.randn(7, model.decoder.output_size)
    for _ in range(2):
        with torch.inference_mode():
            decoding_layer = model.decoder.output_layer_for_decoding()
            torch.testing.assert_close(decoding_layer(output), model.decoder.generator(output))
        token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out).backward()
        optimizer.step()


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_an_equal_length_batch_runs_unpacked_with_the_packed_path_s_outputs_states_and_gradients(rnn, dtype):
    """Sources of one length skip packing (oneDNN's fused RNN on a CPU); the same rows beside a longer one are
    packed. Both must give the same memory, final state and weight gradients."""
    torch.manual_seed(0)
    model = build_model(small_config(rnn=rnn, encoder_layers=2), V_SRC, V_TGT)
    model.encoder.eval()  # no dropout, so the two runs see the same inputs
    equal = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    results = []
    for sources in (equal, equal + [[17, 18, 19, 20, 21, 22]]):
        batch = collate(sources, [[7]] * len(sources))
        model.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            memory, final = model.encoder(batch.src, batch.src_lengths)
        h, c = final if rnn == "lstm" else (final, final)
        memory, h, c = memory[:3, :5].float(), h[:, :3].float(), c[:, :3].float()  # the shared rows
        (memory.square().sum() + h.sum() + c.sum()).backward()
        results.append([memory, h, c, *(p.grad.clone() for p in model.encoder.rnn.parameters())])
    tolerance = dict(atol=1e-5, rtol=1e-4) if dtype is None else dict(atol=0.05, rtol=0.05)
    for unpacked, packed in zip(*results):
        assert torch.allclose(unpacked, packed, **tolerance)


@pytest.mark.parametrize("rnn", ["sru", "qrnn"])
def test_sru_and_qrnn_models_decode_in_int8_and_bf16_close_to_fp32(rnn):
    from seq2seq.precision import model_for_decoding

    torch.manual_seed(0)
    model = build_model(small_config(rnn=rnn, encoder_layers=2), V_SRC, V_TGT).eval()
    batch = toy_batch()
    with torch.no_grad():
        exact = model(batch.src, batch.src_lengths, batch.tgt_in)
        quantized = model_for_decoding(model, "int8", torch.device("cpu"))
        assert type(quantized.encoder.rnn.layers[0][0].proj) is not torch.nn.Linear  # its products run in int8
        int8 = quantized(batch.src, batch.src_lengths, batch.tgt_in)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(batch.src, batch.src_lengths, batch.tgt_in).float()
    for reduced in (int8, bf16):
        torch.testing.assert_close(reduced, exact, atol=0.05 * exact.abs().max().item(), rtol=0.05)
