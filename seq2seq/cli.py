"""Command line: `seq2seq train | translate | data`. Bad input exits with status 2 and one line on stderr."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from seq2seq.errors import UserError


def cmd_train(args: argparse.Namespace) -> None:
    from seq2seq.config import load_config
    from seq2seq.train import train

    config = load_config(args.config, args.set)
    record = train(config, args.run_dir, args.resume)
    print(f"final validation: step {record['step']}, valid loss {record['valid_loss']:.3f}, BLEU {record['bleu']:.2f}")


def _open_output(path: Optional[str]):
    return open(path, "w", encoding="utf-8") if path else sys.stdout


def cmd_translate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from seq2seq.data import open_text
    from seq2seq.translate import Translator

    translator = Translator(args.checkpoint, device=args.device, batch_tokens=args.batch_size)
    if args.input:
        try:
            source = open_text(args.input)
        except OSError as err:
            raise UserError(f"cannot read --input {args.input}: {err.strerror}") from None
    else:
        source = sys.stdin
    out = _open_output(args.output)
    lines = tqdm(source, unit="sent", disable=not args.input, desc="translating")
    try:
        for translation in translator.translate_stream(lines, max_length_ratio=args.max_length_ratio):
            out.write(translation.text + "\n")
            if not args.output:
                out.flush()  # interactive use: show each line as soon as it is translated
    finally:
        if args.output:
            out.close()
        if args.input:
            source.close()


def cmd_data(args: argparse.Namespace) -> None:
    from seq2seq.datasets import fetch_multi30k

    files = fetch_multi30k(args.output, args.local)
    print(f"{len(files)} files verified in {args.output}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq", description="RNN attention translation: train, translate, data.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config, e.g. configs/multi30k_de_en.yaml")
    p.add_argument("--run-dir", help="where checkpoints, logs and metrics go (default: the config's run_dir)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from last.pt")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("translate", help="translate lines with a checkpoint (stdin → stdout by default)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", help="file to translate (plain or .gz); default stdin")
    p.add_argument("--output", help="file to write; default stdout")
    p.add_argument("--batch-size", type=int, default=4000, help="source tokens per batch")
    p.add_argument("--max-length-ratio", type=float, default=2.0, help="longest output as a ratio of the source length")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_translate)

    p = commands.add_parser("data", help="fetch Multi30k (checksums verified), or copy it from a local directory")
    p.add_argument("name", choices=["multi30k"])
    p.add_argument("--output", default="data/multi30k", help="destination directory")
    p.add_argument("--local", help="copy from this directory instead of downloading")
    p.set_defaults(func=cmd_data)
    return parser


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
