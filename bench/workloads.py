"""Real training steps and real decoding as plain callables, for the tools that watch them run (profile, roofline)."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

import torch

from bench.common import MULTI30K
from seq2seq.batching import Batch, TrainingPairs
from seq2seq.checkpoint import load_model
from seq2seq.corpus import read_lines
from seq2seq.model import build_model
from seq2seq.step import TrainingStep, make_optimizer, make_scaler
from seq2seq.translate import Translation, Translator


def training_parts(checkpoint: str, batches: int, dtype: Optional[torch.dtype] = None,
                   equal_source: Optional[bool] = None, rnn: Optional[str] = None) -> tuple[TrainingStep, list[Batch]]:
    """The trainer's step for the checkpoint's model on the CPU, built from the checkpoint's own train section
    (optimizer, lr, clip_norm, label_smoothing), with autocast in `dtype` (None: fp32); and `batches` real
    Multi30k batches at its batch size, with its tokenizers, cut as train.equal_source_lengths says unless
    `equal_source` is given. With `rnn`, the model is a fresh one of that cell, its sizes the checkpoint's."""
    loaded = load_model(checkpoint, "cpu")
    if rnn is not None:
        model_config = loaded.config.model.model_copy(update={"rnn": rnn})
        fresh = build_model(model_config, loaded.src_tokenizer.vocab_size, loaded.tgt_tokenizer.vocab_size)
        loaded = replace(loaded, model=fresh, config=loaded.config.model_copy(update={"model": model_config}))
    src = [loaded.src_tokenizer.encode(s) for s in read_lines(MULTI30K / "train.de.gz")[:4000]]
    tgt = [loaded.tgt_tokenizer.encode(t) for t in read_lines(MULTI30K / "train.en.gz")[:4000]]
    train_config = loaded.config.train
    equal = train_config.equal_source_lengths if equal_source is None else equal_source
    data = TrainingPairs.from_lists(src, tgt, batch_tokens=train_config.batch_tokens, seed=1, equal_source=equal)
    chosen = [step[0] for _, step in data.iterate_steps(0)][:batches]
    model, device = loaded.model.train(), torch.device("cpu")
    step = TrainingStep(model=model, network=model, optimizer=make_optimizer(model, train_config, device),
                        scaler=make_scaler(dtype), train_config=train_config, device=device, amp_dtype=dtype)
    return step, chosen


def training_steps(checkpoint: str, batches: int) -> tuple[Callable[[], None], int]:
    """A callable running the trainer's step (forward, backward, clipping and the optimizer, as the checkpoint's
    config sets them) over `batches` real Multi30k batches, `train.accumulate` batches per update, in fp32
    (the precision of the matmul ceiling the roofline compares with); and their target tokens."""
    step, chosen = training_parts(checkpoint, batches)
    group = step.config.accumulate
    updates = [chosen[i:i + group] for i in range(0, len(chosen), group)]
    # counted once, untimed
    divisors = [sum(batch.num_tgt_tokens for batch in micro_batches) for micro_batches in updates]

    def run() -> None:
        for micro_batches, divisor in zip(updates, divisors):
            step(micro_batches, divisor)

    return run, sum(batch.num_tgt_tokens for batch in chosen)


def translating(checkpoint: str, lines: int, beam: int) -> tuple[Callable[[], list[Translation]], int]:
    """A callable translating the first `lines` test2016 sentences with the translator's own batching; and `lines`."""
    translator = Translator(checkpoint, device="cpu")
    sources = read_lines(MULTI30K / "test_2016_flickr.de.gz")[:lines]
    options = translator.options(beam_size=beam)
    return lambda: translator.translate(sources, options), len(sources)
