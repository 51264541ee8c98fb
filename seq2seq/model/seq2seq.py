"""The encoder-decoder model and `build_model`, the one place where it is wired from the config."""
from __future__ import annotations

import torch
from torch import nn

from seq2seq.config import ModelConfig
from seq2seq.model.attention import build_attention
from seq2seq.model.decoder import Bridge, Decoder, DecoderState, DirectBridge
from seq2seq.model.encoder import Encoder
from seq2seq.tokenizer import PAD


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, bridge: Bridge | DirectBridge, decoder: Decoder):
        super().__init__()
        self.encoder, self.bridge, self.decoder = encoder, bridge, decoder

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """src: (B, S), src_lengths: (B,) → the decoder's initial state (memory, keys and mask included)."""
        memory, final = self.encoder(src, src_lengths)
        h, c = self.bridge(final)
        return self.decoder.init_state(memory, src != PAD, h, c)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                sampling_prob: float = 0.0) -> torch.Tensor:
        """Teacher-forced logits (B, T, V)."""
        return self.decoder(tgt_in, self.encode(src, src_lengths), sampling_prob)


def _init_weights(model: nn.Module, init_range: float) -> None:
    if init_range <= 0:
        return
    for param in model.parameters():
        nn.init.uniform_(param, -init_range, init_range)
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def _build_bridge(config: ModelConfig) -> Bridge | DirectBridge:
    if config.bridge == "direct":
        return DirectBridge(encoder_layers=config.encoder_layers, directions=2 if config.bidirectional else 1)
    encoder_state_size = config.encoder_layers * config.encoder_output_size
    return Bridge(encoder_state_size=encoder_state_size, decoder_layers=config.decoder_layers,
                  decoder_hidden=config.decoder_hidden, has_cell=config.rnn == "lstm")


def _memory_dropout(config: ModelConfig) -> float:
    return config.dropout if config.memory_dropout is None else config.memory_dropout


def build_model(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """Wire encoder, bridge, attention and decoder from the model section of the config."""
    encoder = Encoder(vocab_size=src_vocab_size, embedding_size=config.embedding_size,
                      hidden_size=config.encoder_hidden, num_layers=config.encoder_layers,
                      bidirectional=config.bidirectional, dropout=config.dropout, rnn=config.rnn,
                      output_dropout=_memory_dropout(config))
    bridge = _build_bridge(config)
    # Tied embeddings need the attentional vector in embedding space, since it feeds the output layer.
    output_size = config.embedding_size if config.tie_embeddings else config.decoder_hidden
    attention = build_attention(config.attention, config.decoder_hidden, encoder.output_size)
    decoder = Decoder(vocab_size=tgt_vocab_size, embedding_size=config.embedding_size,
                      hidden_size=config.decoder_hidden, num_layers=config.decoder_layers, output_size=output_size,
                      memory_size=encoder.output_size, attention=attention, dropout=config.dropout, rnn=config.rnn,
                      attentional_activation=config.attentional_activation)
    model = Seq2Seq(encoder, bridge, decoder)
    _init_weights(model, config.init_range)
    if config.tie_embeddings:
        decoder.generator.weight = decoder.embedding.weight
    return model
