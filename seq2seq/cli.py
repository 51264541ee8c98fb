"""Command line: `seq2seq train | prepare | translate | evaluate | score | average | distill | serve | data`.

Bad input exits with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from seq2seq.config import Device, Precision, ReducedPrecision, choices
from seq2seq.errors import UserError


def cmd_prepare(args: argparse.Namespace) -> None:
    from seq2seq.config import load_config
    from seq2seq.prepare import prepare_data

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = prepare_data(load_config(args.config, args.set))
    print(f"prepared: {data.folder} ({len(data.train):,} training pairs; `seq2seq train` with this config reuses it)")


def cmd_train(args: argparse.Namespace) -> None:
    from seq2seq.config import load_config
    from seq2seq.distributed import world_from_env
    from seq2seq.train import train

    config = load_config(args.config, args.set)
    record = train(config, args.run_dir, args.resume)
    if world_from_env().is_main:  # under torchrun, once
        print(f"final validation: step {record['step']}, valid loss {record['valid_loss']:.3f}, "
              f"BLEU {record['bleu']:.2f}")


def _open_output(path: Optional[str]):
    return open(path, "w", encoding="utf-8") if path else sys.stdout


def _open_input(path: Optional[str]):
    from seq2seq.corpus import open_text

    if not path:
        return sys.stdin
    try:
        return open_text(path, errors="replace")  # a stray byte becomes U+FFFD, as on stdin, not a crash
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None


def _count_lines(path: str) -> Optional[int]:
    from seq2seq.corpus import open_text

    with open_text(path, errors="replace") as f:
        return sum(1 for _ in f)


def _decode_options(translator, args: argparse.Namespace):
    return translator.options(beam_size=args.beam_size, n_best=getattr(args, "n_best", None),
                              length_penalty=args.length_penalty, max_length_ratio=args.max_length_ratio,
                              min_length=args.min_length, block_unk=args.no_unk or None, stopping=args.stopping)


def _write_translation(out, index: int, translation, n_best: int) -> None:
    """One line per input; with --n-best N, N lines 'input index TAB score TAB text'."""
    if n_best == 1:
        out.write(translation.text + "\n")
        return
    for hyp in [translation, *translation.alternatives]:
        out.write(f"{index}\t{hyp.score:.4f}\t{hyp.text}\n")


def cmd_translate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from seq2seq.documents import translate_document_stream
    from seq2seq.translate import Translator

    translator = Translator(args.checkpoint, device=args.device, batch_tokens=args.batch_size,
                            precision=_reduced_precision(args))
    options = _decode_options(translator, args)
    if args.document:
        return _translate_file(translator, options, Path(args.document), args.output)
    plot_dir = Path(args.attention_plot) if args.attention_plot else None
    if plot_dir:
        plot_dir.mkdir(parents=True, exist_ok=True)
    source = _open_input(args.input)
    out = _open_output(args.output)
    try:
        documents = translate_document_stream(translator, source, options=options, split=not args.no_split,
                                              with_attention=plot_dir is not None)
        stream = tqdm(documents, unit="line", disable=not args.input, desc="translating",
                      total=_count_lines(args.input) if args.input else None)
        for index, document in enumerate(stream, start=1):
            _write_translation(out, index, document, options.n_best)
            for note in document.notes:
                print(f"seq2seq translate: warning: line {index}: {note}", file=sys.stderr)
            if plot_dir:
                _plot_sentences(plot_dir, index, document.sentences)
            if not args.output:
                out.flush()  # interactive use: show each line as soon as it is translated
    finally:
        if args.output:
            out.close()
        if args.input:
            source.close()


def _translate_file(translator, options, path: Path, output: Optional[str]) -> None:
    """A whole .txt, .html, .docx, .pptx, .epub, .odt or .odp file into `output`, in the same format (formats.py)."""
    from seq2seq.documents import translate_documents
    from seq2seq.formats import read_document, suffix_of

    if not output or suffix_of(output) != suffix_of(path.name):
        raise UserError(f"--document needs --output with the same extension ({path.suffix}): the file is written "
                        "back in its own format")
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    document = read_document(path.read_bytes(), path.name)
    translated = translate_documents(translator, document.texts, options, format=document.format)
    for note in sorted({note for d in translated for note in d.notes}):
        print(f"seq2seq translate: warning: {note}", file=sys.stderr)
    partial = Path(output).with_name(f".{Path(output).name}.partial")
    partial.write_bytes(document.write([d.text for d in translated]))
    os.replace(partial, output)  # a failed run leaves no half-written file under the name asked for


def _plot_sentences(plot_dir: Path, index: int, sentences: list) -> None:
    """One heatmap per sentence: LINE.png for a one-sentence line, LINE-SENTENCE.png otherwise."""
    from seq2seq.plot import plot_attention

    for number, sentence in enumerate(sentences, start=1):
        if sentence.attention is None:
            continue
        name = f"{index:06d}.png" if len(sentences) == 1 else f"{index:06d}-{number:03d}.png"
        plot_attention(sentence.source_pieces, sentence.target_pieces, sentence.attention, plot_dir / name)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from seq2seq.evaluate import evaluate, parse_metrics
    from seq2seq.translate import Translator

    metrics = parse_metrics(args.metrics)
    for path in (args.src, args.ref):
        _existing(path)
    translator = Translator(args.checkpoint, device=args.device, batch_tokens=args.batch_size,
                            precision=_reduced_precision(args))
    options = _decode_options(translator, args)
    hyp_out = open(args.output, "w", encoding="utf-8") if args.output else None
    try:
        report = evaluate(translator, args.src, args.ref, options, metrics, hyp_out, progress=not args.json,
                          split=args.split)
    finally:
        if hyp_out:
            hyp_out.close()
    if args.json:
        checkpoint = args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint
        print(json.dumps({**report, "checkpoint": checkpoint}))
        return
    for name in metrics:
        print(f"{report[name]['text']}\n  signature: {report[name]['signature']}")
    print(f"{report['sentences']} sentences in {report['seconds']:.1f} s, beam {options.beam_size}")


def cmd_score(args: argparse.Namespace) -> None:
    from seq2seq.corpus import read_lines
    from seq2seq.scoring import DEFAULT_SCORE_BATCH_TOKENS, score_pairs
    from seq2seq.translate import Translator

    if len(args.checkpoint) > 1:
        raise UserError("score takes one --checkpoint: it scores one model's probabilities")
    translator = Translator(args.checkpoint[0], device=args.device, precision=_reduced_precision(args))
    sources, targets = read_lines(_existing(args.src)), read_lines(_existing(args.tgt))
    if len(sources) != len(targets):
        raise UserError(f"--src has {len(sources)} lines but --tgt has {len(targets)}")
    loaded = translator.loaded
    scores = score_pairs(loaded.model, loaded.src_tokenizer, loaded.tgt_tokenizer, sources, targets,
                         translator.device, args.batch_size or DEFAULT_SCORE_BATCH_TOKENS)
    out = _open_output(args.output)
    for total, tokens in scores:
        out.write(f"{total:.4f}\t{total / max(tokens, 1):.4f}\n")
    if args.output:
        out.close()


def cmd_average(args: argparse.Namespace) -> None:
    from seq2seq.checkpoint import average_checkpoints, checkpoints_in, save_checkpoint

    paths: list = []
    for given in args.checkpoints:
        paths.extend(checkpoints_in(given) if Path(given).is_dir() else [Path(given)])
    if args.last:
        paths = paths[-args.last:]
    if len(paths) < 2:
        raise UserError(f"need at least two checkpoints to average, found {len(paths)}")
    save_checkpoint(average_checkpoints(paths), args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {args.output}")


def cmd_distill(args: argparse.Namespace) -> None:
    from seq2seq.config import load_config
    from seq2seq.distill import distill
    from seq2seq.translate import Translator

    if args.chunk_lines < 1:
        raise UserError("--chunk-lines must be at least 1")
    config = load_config(args.config, args.set)
    translator = Translator(args.checkpoint, device=args.device, batch_tokens=args.batch_size,
                            precision=_reduced_precision(args))
    state = distill(config, translator, args.output, _decode_options(translator, args), teachers=args.checkpoint,
                    chunk_lines=args.chunk_lines)
    d = config.data
    print(f"distilled {state['lines']:,} lines into {args.output}.{d.src_lang} / {args.output}.{d.tgt_lang}; "
          f"train the student with: seq2seq train {args.config} --set data.train={args.output}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from service.app import create_app, load_registry
    from service.settings import settings_from

    models = {}
    for assignment in args.model:
        label, _, path = assignment.partition("=")
        if not path:
            raise UserError(f"--model expects SRC-TGT=CHECKPOINT, got {assignment!r}")
        models[label] = path
    settings = settings_from({"models": models, "checkpoints": args.checkpoint, "models_dir": args.models_dir,
                              "host": args.host, "port": args.port, "device": args.device, "threads": args.threads,
                              "precision": _reduced_precision(args),
                              "api_keys": args.api_key})
    registry = load_registry(settings)  # before listening: a bad checkpoint is a one-line error, exit 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"serving {', '.join(m.name for m in registry.models)} on http://{settings.host}:{settings.port}",
          file=sys.stderr)
    # uvicorn takes whole seconds; rounding a fractional setting up never cuts a request off sooner than asked
    uvicorn.run(create_app(settings, registry), host=settings.host, port=settings.port, access_log=False,
                timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_s), log_level="info")


def _existing(path: str) -> str:
    if not Path(path).is_file():
        raise UserError(f"file not found: {path}")
    return path


def cmd_data(args: argparse.Namespace) -> None:
    from seq2seq.downloads import LOCK_NAME, fetch, get_corpus, listing

    if args.list:
        print(listing())
        return
    if args.name is None:
        raise UserError("name a corpus (seq2seq data --list shows them)")
    corpus = get_corpus(args.name)
    output = args.output or f"data/{corpus.name}"
    fetched = fetch(corpus.name, output, args.local)
    for name in fetched.trusted_now:
        print(f"seq2seq data: note: no checksum is published for {name}; its SHA-256 is now recorded in "
              f"{Path(output) / LOCK_NAME} (trust on first use) and checked on every later run", file=sys.stderr)
    if not fetched.pairs:
        print(f"{len(fetched.files)} files verified in {output}")
        return
    sets = ", ".join(f"{split} {count:,}" for split, count in fetched.pairs.items())
    state = "extracted" if fetched.changed else "already in place, verified"
    print(f"{corpus.name} {state} in {output}: {sets} pairs (PREFIX.{corpus.src} + PREFIX.{corpus.tgt})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq", description="RNN attention translation: train, translate, data.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config, e.g. configs/multi30k_de_en.yaml")
    p.add_argument("--run-dir", help="where checkpoints, logs and metrics go (default: the config's run_dir)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from last.pt")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("prepare", help="prepare a config's training data ahead of time (train does it on "
                            "first use): cleaned, deduplicated, tokenized into arrays on disk, reused after")
    p.add_argument("config", help="YAML config, e.g. configs/multi30k_de_en.yaml")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser("translate", help="translate lines with a checkpoint (stdin → stdout by default)")
    _add_model_arguments(p)
    _add_decoding_arguments(p)
    p.add_argument("--input", help="file to translate (plain or .gz), one text per line; default stdin")
    p.add_argument("--document", metavar="FILE", help="translate a whole .txt, .html, .docx, .pptx, .epub, .odt or "
                   ".odp file into --output, in the same format (markup, styles and layout kept)")
    p.add_argument("--output", help="file to write; default stdout")
    p.add_argument("--n-best", type=int, help="hypotheses per sentence; >1 writes 'index TAB score TAB text' lines")
    p.add_argument("--attention-plot", metavar="DIR", help="write one attention heatmap PNG per sentence here")
    p.add_argument("--no-split", action="store_true",
                   help="translate each line as one sentence, as it is (for corpora already one sentence per line); "
                        "by default each line is split into sentences and put back together")
    p.set_defaults(func=cmd_translate)

    p = commands.add_parser("evaluate", help="translate a test set and score it with sacrebleu")
    _add_model_arguments(p)
    _add_decoding_arguments(p)
    p.add_argument("--src", required=True, help="source file (plain or .gz)")
    p.add_argument("--ref", required=True, help="reference translations, one per source line")
    p.add_argument("--metrics", default="bleu,chrf,ter", help="comma-separated: bleu, chrf, ter")
    p.add_argument("--output", help="also write the translations here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--split", action="store_true", help="split each line into sentences before translating "
                   "(off: test sets are line-aligned, each line translated as one segment)")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("score", help="log-probability of given translations (forced decoding)")
    _add_model_arguments(p)
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True, help="translations to score, one per source line")
    p.add_argument("--output", help="file to write 'total TAB per-token' log-probabilities; default stdout")
    p.set_defaults(func=cmd_score)

    p = commands.add_parser("average", help="average the weights of several checkpoints of one run")
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, or a run's checkpoints/ folder (its step_N.pt)")
    p.add_argument("--last", type=int, help="use only the last N")
    p.add_argument("--output", required=True, help="the averaged checkpoint to write")
    p.set_defaults(func=cmd_average)

    p = commands.add_parser("distill", help="translate a config's training source with a teacher (a checkpoint or "
                            "an ensemble, beam search) into a new corpus for a student (resumable)")
    p.add_argument("config", help="the YAML config whose training data is distilled (and the student's, later)")
    p.add_argument("--output", required=True, metavar="PREFIX",
                   help="writes PREFIX.SRC, PREFIX.TGT and PREFIX.progress.json; rerun to resume")
    p.add_argument("--chunk-lines", type=int, default=2000, help="lines translated and committed to the disk "
                   "together: a kill loses at most one chunk (default 2000)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    _add_model_arguments(p)
    _add_decoding_arguments(p)
    p.set_defaults(func=cmd_distill)

    p = commands.add_parser("serve", help="serve checkpoints over HTTP (settings also from SEQ2SEQ_* variables)")
    p.add_argument("--checkpoint", action="append", default=[], help="a checkpoint to serve (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="SRC-TGT=CKPT", help="a named checkpoint")
    p.add_argument("--models-dir", help="serve the checkpoints in this folder (best.pt, or every *.pt)")
    p.add_argument("--host", help="default 127.0.0.1 (SEQ2SEQ_HOST)")
    p.add_argument("--port", type=int, help="default 8000 (SEQ2SEQ_PORT)")
    p.add_argument("--device", choices=choices(Device))
    p.add_argument("--threads", type=int, help="torch CPU threads (default all cores)")
    _add_precision_argument(p)
    p.add_argument("--api-key", action="append", default=[], help="require this key (repeatable; SEQ2SEQ_API_KEYS)")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("data", help="fetch a corpus (multi30k, IWSLT14/17, WMT14, Tatoeba; checksums verified) "
                            "and extract it to PREFIX.SRC + PREFIX.TGT files; --list shows them",
                            description="Fetch a public corpus, check each file against its published checksum "
                            "(where none is published, the SHA-256 is recorded in DIR/seq2seq-data.lock at the first "
                            "download and checked on every later run: trust on first use), and extract it to plain "
                            "parallel text files (train/valid/test.SRC and .TGT).")
    p.add_argument("name", nargs="?", metavar="NAME", help="the corpus (see --list), e.g. multi30k")
    p.add_argument("--list", action="store_true", help="show the corpora, their language pairs and sizes")
    p.add_argument("--output", metavar="DIR", help="destination directory (default data/NAME)")
    p.add_argument("--local", metavar="DIR", help="take the files as published (e.g. the .tgz) from this directory "
                   "instead of downloading; they are checked and extracted the same way")
    p.set_defaults(func=cmd_data)
    return parser


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", required=True, help="a checkpoint file; given more than once "
                   "(translate, evaluate), the models decode as an ensemble: they must share their tokenizers")
    p.add_argument("--device", choices=choices(Device), default="auto")
    p.add_argument("--batch-size", type=int, help="source tokens × beam size per batch (default 20000: 4000 source "
                   "tokens at beam 5); for score, tokens of the longer side (default 4000)")
    _add_precision_argument(p)




def _add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=choices(Precision),
                   help="what decoding multiplies in: fp32 (default); bf16 runs the matrix products in bfloat16 "
                        "(autocast: CPUs with AVX-512 BF16 or AMX, recent GPUs); int8 quantizes the weights "
                        "dynamically (CPU only)")
    # the old spelling, deprecated
    p.add_argument("--quantize", choices=choices(ReducedPrecision), help=argparse.SUPPRESS)


def _reduced_precision(args: argparse.Namespace) -> Optional[ReducedPrecision]:
    """'bf16' or 'int8' when asked for (None for fp32); the old --quantize still works, with a warning."""
    if args.quantize:
        print(f"seq2seq: warning: --quantize is deprecated, use --precision {args.quantize}", file=sys.stderr)
        if args.precision not in (None, args.quantize):
            raise UserError(f"--quantize {args.quantize} and --precision {args.precision} disagree")
        return args.quantize
    return None if args.precision in (None, "fp32") else args.precision


def _add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """Decoding flags; each defaults to the checkpoint's own decode settings."""
    p.add_argument("--beam-size", type=int, help="1 is greedy (default: the checkpoint's, normally 5)")
    p.add_argument("--length-penalty", type=float, help="GNMT alpha")
    p.add_argument("--max-length-ratio", type=float, help="longest output as a ratio of the source length")
    p.add_argument("--min-length", type=int, help="target pieces before the end of sentence is allowed")
    p.add_argument("--no-unk", action="store_true", help="never output <unk>")
    p.add_argument("--stopping", choices=["heuristic", "exhaustive"],
                   help="when beam search ends a sentence: once no live beam would win by ending at the next step "
                        "(heuristic, default), or by growing to the length limit (exhaustive: slower)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"seq2seq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
