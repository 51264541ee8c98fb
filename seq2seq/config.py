"""Validated configuration: one pydantic model per YAML section, loaded with `--set` overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seq2seq.errors import UserError

# Each set of choices, defined once: the configs, the service settings and the CLI's choices use these.
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16", "int8"]  # what decoding multiplies in
ReducedPrecision = Literal["bf16", "int8"]  # a Precision other than fp32, the default


def choices(alias: Any) -> tuple[str, ...]:
    """The values of a Literal alias, for argparse."""
    return get_args(alias)


class Section(BaseModel):
    # Misspelt keys are errors, never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusConfig(Section):
    """One training corpus and its share of each epoch."""

    path: str = Field(min_length=1, description="corpus prefix (PREFIX.SRC[.gz] + PREFIX.TGT[.gz]) or a .tsv[.gz] file")
    weight: Optional[float] = Field(default=None, gt=0, description="its share of each epoch, relative to the other "
                                    "corpora's weights; unset on every corpus: in proportion to their sizes")


class DataConfig(Section):
    """Where the parallel text lives, how training pairs are cleaned, and where the prepared data is kept."""

    src_lang: str = Field(min_length=1)
    tgt_lang: str = Field(min_length=1)
    train: str | list[str | CorpusConfig] = Field(
        description="a corpus prefix (PREFIX.SRC[.gz] + PREFIX.TGT[.gz]) or a .tsv[.gz] file; or a list of them, "
                    "each a path or {path, weight}")
    valid: str | list[str] = Field(description="one validation corpus or several; the first decides early stopping")
    max_pairs: Optional[int] = Field(default=None, gt=0,
                                     description="use only the first N pairs of each training corpus")
    max_valid_pairs: Optional[int] = Field(default=None, gt=0)
    max_length: int = Field(default=80, gt=0, lt=65535, description="longest sentence kept, in subword pieces")
    max_length_ratio: float = Field(default=3.0, ge=1.0, description="longest/shortest side ratio kept")
    prepared_dir: str = Field(default="prepared", description="where training data is kept once prepared (cleaned, "
                              "deduplicated, tokenized, kept on disk); safe to delete, it is prepared again")
    workers: Optional[int] = Field(default=None, gt=0, description="processes encoding the corpus; default: all cores")

    @property
    def train_corpora(self) -> list[CorpusConfig]:
        entries = [self.train] if isinstance(self.train, str) else self.train
        return [CorpusConfig(path=e) if isinstance(e, str) else e for e in entries]

    @property
    def valid_sets(self) -> list[str]:
        return [self.valid] if isinstance(self.valid, str) else list(self.valid)

    @model_validator(mode="after")
    def _check_corpora(self) -> "DataConfig":
        if not self.train_corpora or not self.valid_sets:
            raise ValueError("data.train and data.valid need at least one corpus each")
        weighted = [c.weight is not None for c in self.train_corpora]
        if any(weighted) and not all(weighted):
            raise ValueError("give a weight to every training corpus, or to none")
        return self


class TokenizerConfig(Section):
    type: Literal["unigram", "bpe"] = "unigram"
    joint: bool = False
    vocab_size: int = Field(default=8000, ge=16)
    character_coverage: float = Field(default=1.0, gt=0.9, le=1.0)
    sample_pairs: int = Field(default=1_000_000, gt=0, description="SentencePiece is trained on at most this many "
                              "training pairs, a sample drawn with the run's seed")
    # Subword regularisation (Kudo 2018; with a BPE model, BPE-dropout as in Provilkov et al. 2020): the
    # training data is also prepared in `sampling_copies - 1` sampled segmentations, and epoch e trains on copy
    # e mod sampling_copies (copy 0 the usual one). Never at test time: translation always encodes the one way.
    sampling_copies: int = Field(default=1, ge=1, le=16, description="segmentations of the training data prepared: "
                                 "1 is off; N > 1 adds N - 1 sampled ones, taken in turn by epoch")
    sampling_alpha: float = Field(default=0.1, gt=0, le=1, description="unigram: the smoothing of the sampling "
                                  "distribution (lower: more varied); bpe: the dropout probability of a merge")
    sampling_nbest: int = Field(default=-1, ge=-1, description="unigram: sample among the n best segmentations "
                                "(-1: all of them)")


class ModelConfig(Section):
    # sru, qrnn: gates from the input alone, so the encoder's products run once per sequence (model/pooled.py)
    rnn: Literal["lstm", "gru", "sru", "qrnn"] = "lstm"
    embedding_size: int = Field(default=256, gt=0)
    encoder_hidden: int = Field(default=256, gt=0, description="per direction")
    encoder_layers: int = Field(default=1, gt=0)
    bidirectional: bool = True
    decoder_hidden: int = Field(default=512, gt=0)
    decoder_layers: int = Field(default=1, gt=0)
    attention: Literal["bahdanau", "dot", "general"] = "bahdanau"
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    memory_dropout: Optional[float] = Field(
        default=None, ge=0.0, lt=1.0, description="dropout on the encoder outputs that attention reads; "
                                                  "unset: `dropout` (OpenNMT-py applies none: 0)")
    attentional_activation: Literal["tanh", "none"] = Field(
        default="tanh", description="on the attentional vector W[h; context]: tanh (Luong et al.), or none "
                                    "(OpenNMT-py with Bahdanau attention)")
    tie_embeddings: bool = True
    init_range: float = Field(default=0.0, ge=0.0, description="uniform init range for all weights; "
                                                               "0 keeps torch defaults (learns faster here)")
    bridge: Literal["learned", "direct"] = Field(
        default="learned", description="decoder's initial state: a tanh layer over all encoder final states, or "
                                       "each encoder layer's final state as it is (OpenNMT-py's default)")

    @property
    def encoder_output_size(self) -> int:
        return self.encoder_hidden * (2 if self.bidirectional else 1)

    @model_validator(mode="after")
    def _check_dot_attention(self) -> "ModelConfig":
        if self.attention == "dot" and self.encoder_output_size != self.decoder_hidden:
            raise ValueError(
                f"dot attention needs encoder output size ({self.encoder_output_size}) "
                f"== decoder_hidden ({self.decoder_hidden}); use 'general' or 'bahdanau'"
            )
        return self

    @model_validator(mode="after")
    def _check_direct_bridge(self) -> "ModelConfig":
        encoder_shape = (self.encoder_layers, self.encoder_output_size)
        if self.bridge == "direct" and encoder_shape != (self.decoder_layers, self.decoder_hidden):
            raise ValueError(
                f"bridge 'direct' needs encoder_layers == decoder_layers and encoder output size "
                f"({self.encoder_output_size}) == decoder_hidden ({self.decoder_hidden}); use bridge 'learned'"
            )
        return self


class EarlyStoppingConfig(Section):
    metric: Literal["bleu", "loss"] = "bleu"
    patience: Optional[int] = Field(default=8, gt=0, description="validations without improvement before stopping "
                                    "(under the cosine schedule, counted from the start of its annealing); null: "
                                    "never stop early (the metric still chooses the best checkpoint)")


class TrainConfig(Section):
    batch_tokens: int = Field(default=3000, gt=0, description="target tokens per batch (padding included)")
    equal_source_lengths: bool = Field(
        default=False, description="cut batches where the source length changes, so the encoder runs each batch "
        "unpacked (oneDNN's fused LSTM on a CPU), at the cost of some smaller batches")
    accumulate: int = Field(default=1, ge=1, le=1024,
                            description="batches per optimizer step (per rank under torchrun): an effective batch "
                                        "of accumulate × ranks × batch_tokens")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    clip_norm: float = Field(default=5.0, gt=0)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    scheduled_sampling: float = Field(default=0.0, ge=0, le=1,
                                      description="probability of feeding the model's own prediction")
    warmup_steps: int = Field(default=0, ge=0)
    schedule: Literal["constant", "plateau", "decay", "cosine"] = "plateau"
    decay_factor: float = Field(default=0.5, gt=0, le=1, description="lr multiplier for plateau and decay")
    plateau_patience: int = Field(default=2, ge=0, description="validations without improvement before lowering lr")
    decay_every: int = Field(default=5000, gt=0, description="steps between decays (schedule: decay)")
    anneal_start: float = Field(default=0.0, ge=0, lt=1,
                                description="schedule: cosine; fraction of the budget (steps, epochs or minutes) "
                                            "trained at full lr before annealing to min_lr")
    min_lr: float = Field(default=1e-5, ge=0)
    max_steps: Optional[int] = Field(default=None, gt=0)
    max_epochs: Optional[int] = Field(default=None, gt=0)
    max_minutes: Optional[float] = Field(default=None, gt=0, description="wall-clock budget for training")
    valid_every: int = Field(default=500, gt=0)
    save_every: Optional[int] = Field(default=None, gt=0,
                                      description="steps between last.pt saves; default valid_every")
    keep_last: int = Field(default=2, ge=1)
    init_from: Optional[str] = Field(
        default=None, min_length=1, description="a checkpoint whose weights and SentencePiece models start this run "
        "(fine-tuning, or a distilled student started from its teacher); optimizer, schedule and step start afresh, "
        "and the model section must build the same architecture")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    valid_max_length_ratio: float = Field(default=1.5, gt=0)
    amp: bool = Field(default=True, description="mixed precision: bf16 products on a GPU or a CPU that multiplies "
                      "bf16 natively (fp16 on older GPUs); fp32 elsewhere")
    device: Device = "auto"
    prefetch_batches: int = Field(default=2, ge=0, description="batches collated ahead in a background thread, "
                                  "overlapping the training step (0: none)")
    threads: Optional[int] = Field(default=None, gt=0, description="CPU threads; default all cores")

    @model_validator(mode="after")
    def _check_stop(self) -> "TrainConfig":
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of max_steps, max_epochs, max_minutes")
        return self


class DecodeConfig(Section):
    """How translations are searched for; the checkpoint carries these as the model's defaults."""

    beam_size: int = Field(default=5, ge=1, le=64, description="1 is greedy search")
    n_best: int = Field(default=1, ge=1, description="hypotheses returned per sentence, at most beam_size")
    length_penalty: float = Field(default=1.0, ge=0, le=5, description="GNMT alpha: score / ((5 + len) / 6) ** alpha")
    max_length_ratio: float = Field(default=2.0, gt=0, le=10,
                                    description="longest output = ratio × source pieces + extra")
    max_length_extra: int = Field(default=5, ge=0, le=1000)
    min_length: int = Field(default=0, ge=0, description="target pieces before the end of sentence is allowed")
    block_unk: bool = Field(default=False, description="never output <unk>")
    stopping: Literal["heuristic", "exhaustive"] = Field(
        default="heuristic",
        description="beam search ends a sentence once no live beam would beat its n-th finished one by ending at "
                    "the next step (heuristic), or by growing to the longest allowed length (exhaustive)")

    @model_validator(mode="after")
    def _check_n_best(self) -> "DecodeConfig":
        if self.n_best > self.beam_size:
            raise ValueError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        return self


def decoding_options(defaults: DecodeConfig, **overrides: Any) -> DecodeConfig:
    """`defaults` (a checkpoint's) with `overrides` (None values ignored), validated; a UserError if invalid."""
    settings = defaults.model_dump()
    settings.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DecodeConfig(**settings)
    except ValidationError as err:
        raise UserError(f"invalid decoding option: {format_validation_error(err)}") from None


class Config(Section):
    name: str = "model"
    run_dir: str = "runs/model"
    seed: int = 1
    data: DataConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig
    decode: DecodeConfig = DecodeConfig()


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` override to a raw config dict (value parsed as YAML)."""
    if "=" not in assignment:
        raise UserError(f"--set expects section.key=value, got {assignment!r}")
    dotted, value = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(value) if value.strip() else None


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def config_from_dict(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise UserError("config must be a YAML mapping of sections")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"invalid config: {format_validation_error(err)}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `section.key=value` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config {path} is not valid YAML: {err}".splitlines()[0]) from None
    for assignment in overrides:
        apply_override(raw, assignment)
    return config_from_dict(raw)
