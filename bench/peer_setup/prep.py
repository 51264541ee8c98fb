"""The peers' data: Multi30k de→en as SentencePiece pieces (unigram 8k per language, trained on train only).

usage: prep.py OUT_DIR   (reads data/multi30k; writes OUT_DIR/raw, OUT_DIR/sp and OUT_DIR/spm_{de,en}.model)
"""
import gzip
import sys
from pathlib import Path

import sentencepiece as spm

SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def main(out: Path, corpus: Path = Path("data/multi30k")) -> None:
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "sp").mkdir(parents=True, exist_ok=True)
    for short, name in SPLITS.items():
        for lang in ("de", "en"):
            with gzip.open(corpus / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
                (out / "raw" / f"{short}.{lang}").write_text(f.read(), encoding="utf-8")
    for lang in ("de", "en"):
        spm.SentencePieceTrainer.train(input=str(out / "raw" / f"train.{lang}"), model_prefix=str(out / f"spm_{lang}"),
                                       vocab_size=8000, model_type="unigram", character_coverage=1.0,
                                       hard_vocab_limit=False, minloglevel=2)
        processor = spm.SentencePieceProcessor(model_file=str(out / f"spm_{lang}.model"))
        for short in SPLITS:
            lines = (out / "raw" / f"{short}.{lang}").read_text(encoding="utf-8").splitlines()
            encoded = [" ".join(processor.encode(line, out_type=str)) for line in lines]
            (out / "sp" / f"{short}.{lang}").write_text("\n".join(encoded) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
