"""Ensembles: several models that share their SentencePiece models, decoded as one.

At every step each member reads the same previous tokens, and the members' log-probabilities are averaged
(the search then renormalises them: a product of experts). An `Ensemble` offers what search uses of a
`Seq2Seq` (`encode`, and a `decoder` with `step` and `output_layer_for_decoding`), so greedy and beam search
decode it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from seq2seq.checkpoint import ModelCard
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.model.decoder import DecoderState, OutputLayer


@dataclass
class EnsembleState:
    """One DecoderState per member, their rows kept in step."""

    members: list[DecoderState]

    def with_beams(self, K: int) -> "EnsembleState":
        return EnsembleState([s.with_beams(K) for s in self.members])

    def select(self, rows: torch.Tensor, sentences: Optional[torch.Tensor] = None) -> "EnsembleState":
        return EnsembleState([s.select(rows, sentences) for s in self.members])

    def reorder(self, rows: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.reorder(rows) for s in self.members])


class EnsembleDecoder:
    """The members' decoders stepped together.

    The members' attentional outputs travel side by side in one (B, ΣO) tensor, so that search can restrict
    an output layer to some rows as it does for one model; the ensemble's output layer splits it again.
    """

    def __init__(self, members: Sequence[Seq2Seq]):
        self.members = list(members)
        self.output_sizes = [m.decoder.output_size for m in self.members]

    def output_layer_for_decoding(self, dtype: Optional[torch.dtype] = None) -> OutputLayer:
        return self._averaged([m.decoder.output_layer_for_decoding(dtype) for m in self.members])

    def _averaged(self, layers: Sequence[OutputLayer]) -> OutputLayer:
        def project(outputs: torch.Tensor) -> torch.Tensor:  # (B, ΣO) → mean log-probabilities (B, V)
            parts = outputs.split(self.output_sizes, dim=1)
            log_probs = [layer(part).float().log_softmax(dim=1) for layer, part in zip(layers, parts)]
            return torch.stack(log_probs).mean(dim=0)

        return project

    def step(self, tokens: torch.Tensor, state: EnsembleState,
             output_layer: Optional[OutputLayer] = None) -> tuple[torch.Tensor, torch.Tensor, EnsembleState]:
        """As `Decoder.step`: tokens (B,) → mean log-probabilities (B, V), mean attention (B, S), new state."""
        outputs, weights, states = [], [], []
        for member, member_state in zip(self.members, state.members):
            output, member_weights, new_state = member.decoder.attentional_step(tokens, member_state)
            outputs.append(output)
            weights.append(member_weights)
            states.append(new_state)
        if output_layer is None:
            output_layer = self._averaged([m.decoder.generator for m in self.members])
        mean_weights = torch.stack(weights).float().mean(0)
        return output_layer(torch.cat(outputs, dim=1)).float(), mean_weights, EnsembleState(states)


class Ensemble(nn.Module):
    """Models decoded as one (see the module's docstring); they must share both tokenizers."""

    def __init__(self, members: Sequence[Seq2Seq]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.members = nn.ModuleList(members)
        self.decoder = EnsembleDecoder(members)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EnsembleState:
        return EnsembleState([member.encode(src, src_lengths) for member in self.decoder.members])


def check_members(paths: Sequence[str | Path], cards: Sequence[ModelCard]) -> None:
    """Refuse, with a UserError naming the checkpoint, members whose languages or tokenizers differ from the first's."""
    first = cards[0]
    for path, card in zip(paths[1:], cards[1:]):
        if (card.src_lang, card.tgt_lang) != (first.src_lang, first.tgt_lang):
            raise UserError(f"{path} translates {card.src_lang}→{card.tgt_lang}, {paths[0]} "
                            f"{first.src_lang}→{first.tgt_lang}: an ensemble's models share one language pair")
        for side in ("src", "tgt"):
            if getattr(card, f"{side}_tokenizer").model_proto != getattr(first, f"{side}_tokenizer").model_proto:
                raise UserError(f"{path} has another {'source' if side == 'src' else 'target'} tokenizer than "
                                f"{paths[0]}: an ensemble's models must be trained with the same SentencePiece models")
