"""Target side: the bridge from the encoder's final state, and an attention decoder with input feeding.

The decoder runs one token at a time (input feeding makes each step depend on the previous one), so the
work that does not depend on the previous step is hoisted out of the loop: the embedding part of the
first layer's input projection is computed for the whole sequence at once, the attention keys once per
sentence, and the output layer once over all steps.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Union, cast

import torch
from torch import nn

from seq2seq.model import fused
from seq2seq.model.attention import Attention
from seq2seq.model.dropout import ByteDropout
from seq2seq.model.pooled import NUM_GATES as POOLED_GATES
from seq2seq.tokenizer import PAD

# h (L·dirs, B, H) for a GRU, c for an SRU or QRNN, (h, c) for an LSTM
EncoderFinal = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
LayerStates = list[torch.Tensor]  # one (B, H) state per decoder layer

OutputLayer = Callable[[torch.Tensor], torch.Tensor]  # attentional output (N, O) → logits (N, V)


NUM_GATES = {"lstm": 4, "gru": 3, **POOLED_GATES}


class RecurrentCell(nn.Module):
    """One LSTM, GRU, SRU or QRNN layer, stepped once per token on an input that is already projected to gates.

    SRU and QRNN cells have no product on their previous state (pooled.py; QRNN with window 1 here, since
    input feeding gives each step its input only after the previous step)."""

    def __init__(self, kind: str, input_size: int, hidden_size: int):
        super().__init__()
        self.kind, self.hidden_size = kind, hidden_size
        num_gates = NUM_GATES[kind]
        self.input_proj = nn.Linear(input_size, num_gates * hidden_size)
        self.hidden_proj = (None if kind in POOLED_GATES
                            else nn.Linear(hidden_size, num_gates * hidden_size, bias=kind == "gru"))

    def step(self, gates_in: torch.Tensor, h: torch.Tensor,
             c: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """gates_in: (B, G·H) projected input, h, c: (B, H) → new (h, c); c is None for a GRU."""
        if self.hidden_proj is None:
            assert c is not None  # SRU and QRNN layers carry their pooled state as c
            if fused.applies(gates_in, c):
                return fused.gated_cell(self.kind, gates_in, c)
            return self._pooled_step(gates_in, c)
        if self._fuses(gates_in, h):
            return self._fused_step(gates_in, h, c)
        hidden_gates = self.hidden_proj(h)
        H = self.hidden_size
        # split/chunk rather than slicing: their backward is one concatenation, where each slice's
        # backward would zero-fill and add a full-size gradient.
        if self.kind == "lstm":
            assert c is not None  # an LSTM layer always carries its cell state
            sigmoid_part, candidate = (gates_in + hidden_gates).split([3 * H, H], dim=1)
            i, f, o = torch.sigmoid(sigmoid_part).chunk(3, dim=1)  # input, forget, output gates in one kernel
            c = f * c + i * torch.tanh(candidate)
            return o * torch.tanh(c), c
        rz_in, n_in = gates_in.split([2 * H, H], dim=1)
        rz_hidden, n_hidden = hidden_gates.split([2 * H, H], dim=1)
        r, z = torch.sigmoid(rz_in + rz_hidden).chunk(2, dim=1)
        n = torch.tanh(n_in + r * n_hidden)
        return n + z * (h - n), None

    def _pooled_step(self, gates_in: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "sru":
            z, f, r, highway = gates_in.chunk(4, dim=1)
            f, r = torch.sigmoid(f), torch.sigmoid(r)
            c = f * c + (1 - f) * z
            return r * c + (1 - r) * highway, c
        z, f, o = gates_in.chunk(3, dim=1)
        f = torch.sigmoid(f)
        c = f * c + (1 - f) * torch.tanh(z)
        return torch.sigmoid(o) * c, c

    def _fuses(self, gates_in: torch.Tensor, h: torch.Tensor) -> bool:
        """Whether this step takes the fused kernels: a float layer (not int8) on tensors they take."""
        return type(self.hidden_proj) is nn.Linear and fused.applies(gates_in, h)

    def _fused_step(self, gates_in: torch.Tensor, h: torch.Tensor,
                    c: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        assert self.hidden_proj is not None  # an LSTM or GRU layer
        if self.kind == "lstm":
            assert c is not None
            # the hidden product adds itself to the input's gates (addmm): no separate sum, forward or backward
            gates = torch.addmm(gates_in, h, self.hidden_proj.weight.t())
            return fused.gated_cell("lstm", gates, c)
        return fused.gru_cell(gates_in, self.hidden_proj(h), h), None


class Bridge(nn.Module):
    """Maps the encoder's final states (all layers and directions) to the decoder's initial state per layer."""

    def __init__(self, *, encoder_state_size: int, decoder_layers: int, decoder_hidden: int, has_cell: bool):
        super().__init__()
        self.decoder_layers, self.decoder_hidden = decoder_layers, decoder_hidden
        self.h_proj = nn.Linear(encoder_state_size, decoder_layers * decoder_hidden)
        self.c_proj = nn.Linear(encoder_state_size, decoder_layers * decoder_hidden) if has_cell else None

    def _map(self, proj: nn.Linear, state: torch.Tensor) -> list[torch.Tensor]:
        flat = state.transpose(0, 1).reshape(state.size(1), -1)  # (L·dirs, B, H) → (B, L·dirs·H)
        mapped = torch.tanh(proj(flat)).view(-1, self.decoder_layers, self.decoder_hidden)
        return list(mapped.unbind(1))  # decoder_layers × (B, Hd)

    def forward(self, final: EncoderFinal) -> tuple[LayerStates, Optional[LayerStates]]:
        if self.c_proj is None:
            assert isinstance(final, torch.Tensor)  # a GRU's final state is h alone
            return self._map(self.h_proj, final), None
        h, c = final
        return self._map(self.h_proj, h), self._map(self.c_proj, c)


class DirectBridge(nn.Module):
    """Starts decoder layer i from encoder layer i's final state, directions concatenated, with no parameters."""

    def __init__(self, *, encoder_layers: int, directions: int):
        super().__init__()
        self.encoder_layers, self.directions = encoder_layers, directions

    def _map(self, state: torch.Tensor) -> list[torch.Tensor]:
        _, B, H = state.shape  # (L·dirs, B, H), layer-major as torch's RNNs give it
        per_layer = state.view(self.encoder_layers, self.directions, B, H).permute(0, 2, 1, 3)
        return list(per_layer.reshape(self.encoder_layers, B, self.directions * H).unbind(0))  # L × (B, dirs·H)

    def forward(self, final: EncoderFinal) -> tuple[LayerStates, Optional[LayerStates]]:
        if isinstance(final, torch.Tensor):
            return self._map(final), None
        h, c = final
        return self._map(h), self._map(c)


@dataclass
class DecoderState:
    """Everything one decoding step needs. The recurrent parts have a row per hypothesis (B·K, ...: K beams
    per sentence), the source side one per sentence (B, ...), which its K beams share."""

    h: list[torch.Tensor]  # per layer (B·K, H)
    c: Optional[list[torch.Tensor]]  # per layer (B·K, H), None for a GRU
    feed: torch.Tensor  # (B·K, O) the previous attentional vector (input feeding)
    memory: torch.Tensor  # (B, S, D) encoder outputs
    keys: torch.Tensor  # attention keys prepared from memory
    mask: torch.Tensor  # (B, S) true on real source tokens

    def with_beams(self, K: int) -> "DecoderState":
        """K rows per sentence, each a copy of its sentence's start."""
        return self.reorder(torch.arange(self.feed.size(0), device=self.feed.device).repeat_interleave(K))

    def select(self, rows: torch.Tensor, sentences: Optional[torch.Tensor] = None) -> "DecoderState":
        """The recurrent parts' `rows` and the source side's `sentences` (the same index by default)."""
        pick = lambda t: t.index_select(0, rows if sentences is None else sentences)  # noqa: E731
        return replace(self.reorder(rows), memory=pick(self.memory), keys=pick(self.keys), mask=pick(self.mask))

    def reorder(self, rows: torch.Tensor) -> "DecoderState":
        """Only the recurrent parts' `rows`: for beams of the same sentences, which share memory, keys and mask."""
        pick = lambda t: t.index_select(0, rows)  # noqa: E731
        return replace(self, h=[pick(t) for t in self.h], c=None if self.c is None else [pick(t) for t in self.c],
                       feed=pick(self.feed))


class Decoder(nn.Module):
    def __init__(self, *, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 output_size: int, memory_size: int, attention: Attention, dropout: float, rnn: str,
                 attentional_activation: str):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.dropout = ByteDropout(dropout)
        self.cells = nn.ModuleList(
            [RecurrentCell(rnn, embedding_size if i == 0 else hidden_size, hidden_size) for i in range(num_layers)]
        )
        num_gates = NUM_GATES[rnn]
        self.feed_proj = nn.Linear(output_size, num_gates * hidden_size, bias=False)
        self.attention = attention
        self.combine = nn.Linear(hidden_size + memory_size, output_size)
        self.activation = nn.Tanh() if attentional_activation == "tanh" else nn.Identity()
        self.output_size = output_size
        self.generator = nn.Linear(output_size, vocab_size)
        self.pooled = rnn in POOLED_GATES

    def init_state(self, memory: torch.Tensor, mask: torch.Tensor, h: LayerStates,
                   c: Optional[LayerStates]) -> DecoderState:
        """The first step's state. SRU and QRNN cells carry one state, c, started from the bridge's; their h is
        the layer's output, which no step reads back."""
        if self.pooled:
            c = list(h)
        feed = memory.new_zeros(memory.size(0), self.output_size)
        return DecoderState(h, c, feed, memory, self.attention.prepare_keys(memory), mask)

    def _cells(self) -> Iterable[RecurrentCell]:
        return cast("Iterable[RecurrentCell]", self.cells)  # what nn.ModuleList holds here, typed

    def _first_cell(self) -> RecurrentCell:
        return cast(RecurrentCell, self.cells[0])

    def _step(self, first_gates: torch.Tensor,
              state: DecoderState) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """first_gates: (B, G·H) the embedding part of layer 0's input → attentional output (B, O), weights (B, S),
        state."""
        x = first_gates + self.feed_proj(state.feed)
        new_h: LayerStates = []
        new_c: LayerStates = []  # stays empty for a GRU
        for layer, cell in enumerate(self._cells()):
            if layer > 0:
                x = cell.input_proj(self.dropout(new_h[-1]))
            h, c = cell.step(x, state.h[layer], None if state.c is None else state.c[layer])
            new_h.append(h)
            if c is not None:
                new_c.append(c)
        context, weights = self.attention(new_h[-1], state.keys, state.memory, state.mask)
        output = self.dropout(self.activation(self.combine(torch.cat([new_h[-1], context], dim=-1))))
        state = replace(state, h=new_h, c=None if state.c is None else new_c, feed=output)
        return output, weights, state

    def step(self, tokens: torch.Tensor, state: DecoderState,
             output_layer: Optional[OutputLayer] = None) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """One decoding step. tokens: (B,) previous ids → logits (B, V), attention (B, S), new state.

        `output_layer` maps the attentional output (B, O) to logits: the generator unless given
        (search passes `output_layer_for_decoding()`, built once per translator or batch).
        """
        output, weights, state = self.attentional_step(tokens, state)
        return (self.generator if output_layer is None else output_layer)(output).float(), weights, state

    def attentional_step(self, tokens: torch.Tensor,
                         state: DecoderState) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """One decoding step up to the attentional output: tokens (B,) → output (B, O), attention (B, S), state."""
        first_gates = self._first_cell().input_proj(self.dropout(self.embedding(tokens)))
        return self._step(first_gates, state)

    def output_layer_for_decoding(self, dtype: Optional[torch.dtype] = None) -> OutputLayer:
        """The generator as one product without a bias on a CPU: the bias becomes a weight row fed by a constant 1.

        On a CPU a product with a bias first copies the bias into every row of the (B, V) result and then
        adds to it, one more pass over the biggest tensor of a decoding step. Folded, decoding is faster
        (by how much: BENCHMARKS.md). Elsewhere (a GPU, an int8 generator) the generator is returned as it is.
        With `dtype` (bf16 decoding) the folded weight is stored in it, rather than cast at every step.
        The result is a snapshot of the weights: build it again after they change. (It is not cached here,
        because fused Adam updates the weights without moving their version counters.)
        """
        generator = self.generator
        if type(generator) is not nn.Linear or generator.bias is None or generator.weight.device.type != "cpu":
            return generator
        with torch.no_grad():
            folded = torch.cat([generator.weight, generator.bias.unsqueeze(1)], dim=1).t()  # (O + 1, V)
            folded = folded.to(dtype or folded.dtype).contiguous()

        def project(output: torch.Tensor) -> torch.Tensor:
            return torch.cat([output, output.new_ones(output.size(0), 1)], dim=1).to(folded.dtype).mm(folded)  # (B, V)

        return project

    def forward(self, tgt_in: torch.Tensor, state: DecoderState, sampling_prob: float = 0.0) -> torch.Tensor:
        """Teacher-forced decoding. tgt_in: (B, T) → logits (B, T, V).

        With `sampling_prob` > 0 (scheduled sampling), each sentence's next input is, with that
        probability, the model's own greedy prediction instead of the reference token.
        """
        return self.generator(self.attentional_outputs(tgt_in, state, sampling_prob))

    def attentional_outputs(self, tgt_in: torch.Tensor, state: DecoderState,
                            sampling_prob: float = 0.0) -> torch.Tensor:
        """The recurrent loop of teacher-forced decoding: tgt_in (B, T) → attentional outputs (B, T, O)."""
        embedded = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        first_gates = self._first_cell().input_proj(embedded)  # (B, T, G·H), once for all steps
        # unbind once: indexing [:, t] inside the loop would cost a full-size gradient per step in backward
        outputs: list[torch.Tensor] = []
        for t, gates_t in enumerate(first_gates.unbind(1)):
            if sampling_prob > 0 and t > 0:
                gates_t = self._maybe_sample(gates_t, outputs[-1], sampling_prob)
            output, _, state = self._step(gates_t, state)
            outputs.append(output)
        return torch.stack(outputs, dim=1)

    def _maybe_sample(self, gates_t: torch.Tensor, prev_output: torch.Tensor, prob: float) -> torch.Tensor:
        with torch.no_grad():
            predicted = self.generator(prev_output).argmax(-1)  # (B,)
            use_prediction = torch.rand(predicted.size(0), device=predicted.device) < prob
        sampled_gates = self._first_cell().input_proj(self.dropout(self.embedding(predicted)))
        return torch.where(use_prediction.unsqueeze(1), sampled_gates, gates_t)
