"""Real training steps and real decoding as plain callables, for the tools that watch them run (profile, roofline)."""
from __future__ import annotations

from typing import Callable

import torch

from bench.common import MULTI30K
from seq2seq.checkpoint import load_model
from seq2seq.data import Batch, ParallelDataset, read_lines
from seq2seq.train import fused_adam_available, token_loss_sum
from seq2seq.translate import Translator


def training_parts(checkpoint: str, batches: int) -> tuple[torch.nn.Module, list[Batch], torch.optim.Optimizer]:
    """The checkpoint's model in training mode, `batches` real Multi30k batches at its batch size (with its
    tokenizers), and fused Adam over the model, as the trainer builds them."""
    loaded = load_model(checkpoint, "cpu")
    src = [loaded.src_tokenizer.encode(s) for s in read_lines(MULTI30K / "train.de.gz")[:4000]]
    tgt = [loaded.tgt_tokenizer.encode(t) for t in read_lines(MULTI30K / "train.en.gz")[:4000]]
    data = ParallelDataset(src, tgt, loaded.config.train.batch_tokens, seed=1)
    chosen = [batch for _, batch in data.iterate(0)][:batches]
    model = loaded.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused_adam_available(torch.device("cpu")))
    return model, chosen, optimizer


def training_steps(checkpoint: str, batches: int) -> tuple[Callable[[], None], int]:
    """A callable running forward, backward, clipping and Adam over `batches` real Multi30k batches, as the
    trainer does, with the checkpoint's model, tokenizers and batch size; and their target tokens."""
    model, chosen, optimizer = training_parts(checkpoint, batches)

    def run() -> None:
        for batch in chosen:
            optimizer.zero_grad(set_to_none=True)
            loss = token_loss_sum(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out)
            (loss / batch.num_tgt_tokens).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()

    return run, sum(batch.num_tgt_tokens for batch in chosen)


def translating(checkpoint: str, lines: int, beam: int) -> tuple[Callable[[], None], int]:
    """A callable translating the first `lines` test2016 sentences with the translator's own batching; and `lines`."""
    translator = Translator(checkpoint, device="cpu")
    sources = read_lines(MULTI30K / "test_2016_flickr.de.gz")[:lines]
    options = translator.options(beam_size=beam)
    return lambda: translator.translate(sources, options), len(sources)
