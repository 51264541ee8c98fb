"""Sentence-segmentation candidates compared on the project's own data (de, en, fr, cs).

    /tmp/segvenvs/all/bin/python bench/segmenters.py [--venvs /tmp/segvenvs]

Imports only the stdlib and the candidates (pysbd, sentencex, sentence-splitter, blingfire, syntok); a
candidate whose import fails is skipped. Prints a Markdown table and writes bench/results/segmenters-DATE.json.

Method. Gold = line boundaries. Each file's stripped, non-empty lines are cut into consecutive groups of k
lines (k = 3 and 6; a short tail is dropped), joined with one space, and each candidate splits the joined text.
Every returned sentence is located in the text by counting non-whitespace characters (all candidates keep
those intact; checked), so a predicted boundary is the offset of a sentence's first non-whitespace character,
and a gold boundary the offset where line 2..k starts. Per (candidate, language, dataset, k):
  recall    = gold boundaries found / gold boundaries;
  precision = found boundaries that are gold / found boundaries. IWSLT lines can hold several sentences, so
              there precision is a lower bound, the same lower bound for every candidate;
  exact     = groups whose sentences, stripped, equal the original lines;
  sent/s    = gold lines / seconds to segment all groups, median of 3 runs (segmenter objects built beforehand).
Data: IWSLT14 test (TED, raw casing: abbreviations, numbers, quotes) in de, en; Multi30k val + test_2016_flickr
in de, en, fr, cs. A Multi30k caption lacking final punctuation gets '.' appended before joining (the
candidates' docs say nothing against it; the counts are reported); IWSLT lines are left as they are.
pysbd has no Czech: it runs cs with its Slovak rules ("sk", marked cs→sk). On IWSLT at k=3 every error is
counted by kind, with examples: missed boundaries (whether the line lacked final punctuation, which no rule
can recover) and false splits (inside a token, after an abbreviation, an ordinal/number or an ellipsis, before a
lowercase word, or "plausible": punctuation then a capital, most likely a real sentence end inside a line).
"""
from __future__ import annotations

import datetime
import gzip
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

DATA = Path("/work/shared/data")
RESULTS = Path(__file__).resolve().parent / "results"
FINAL = re.compile(r"[.!?…][\"'”“»«’)\]]*$")
Splitter = Callable[[str], list[str]]


def make_splitters(lang: str) -> dict[str, tuple[Splitter, str]]:
    """Candidate name -> (text -> sentences, language actually used). Skips candidates that do not import."""
    out: dict[str, tuple[Splitter, str]] = {}
    try:
        import pysbd
        code = lang if lang in pysbd.languages.LANGUAGE_CODES else {"cs": "sk"}.get(lang, "en")
        seg = pysbd.Segmenter(language=code, clean=False)
        out["pysbd"] = (seg.segment, code)
    except ImportError:
        pass
    try:
        from sentencex import segment
        out["sentencex"] = (lambda t: list(segment(lang, t)), lang)
    except ImportError:
        pass
    try:
        from sentence_splitter import SentenceSplitter
        out["sentence-splitter"] = (SentenceSplitter(language=lang).split, lang)
    except ImportError:
        pass
    try:
        import blingfire
        out["blingfire"] = (lambda t: blingfire.text_to_sentences(t).split("\n"), "any")
    except ImportError:
        pass
    try:
        from syntok.segmenter import analyze
        out["syntok"] = (lambda t: ["".join(tok.spacing + tok.value for tok in s) for p in analyze(t) for s in p],
                         "any")
    except ImportError:
        pass
    return out


def read(path: Path, add_period: bool) -> tuple[list[str], int]:
    lines = [ln.strip() for ln in gzip.open(path, "rt", encoding="utf-8") if ln.strip()]
    if not add_period:
        return lines, 0
    fixed = [ln if FINAL.search(ln) else ln + "." for ln in lines]
    return fixed, sum(a != b for a, b in zip(lines, fixed))


def starts(text: str, pieces: list[str]) -> list[int]:
    """Offset in text of each piece's first non-whitespace character, by counting non-whitespace characters."""
    pos = [i for i, c in enumerate(text) if not c.isspace()]
    out, n = [], 0
    for p in pieces:
        k = sum(not c.isspace() for c in p)
        if k:
            out.append(pos[n])
            n += k
    if n != len(pos):
        raise ValueError("splitter changed the non-whitespace text")
    return out


ABBREV = re.compile(r"\(?((\w\.)+|[A-Z]|Dr|Nr|Mr|Mrs|Ms|St|Prof|ca|bzw|usw|etc|vs|evtl|ggf|vgl|Jh|Mio|Mrd)\.")


def kind(text: str, b: int, gold: bool) -> str:
    """Why a split at b is wrong: for a missed gold boundary, whether its line lacks final punctuation; for a
    false split, what surrounds it ("plausible" = punctuation then a capital: likely a real in-line sentence end)."""
    before, after = text[:b].rstrip(), text[b:]
    if gold:
        return "missed: line has no final punctuation" if not FINAL.search(before) else "missed"
    word = before.split(" ")[-1] if before else ""
    if not text[b - 1].isspace():
        return "inside a token"
    for name, pattern in (("abbreviation", ABBREV), ("ordinal/number", re.compile(r"\d+\.")),
                          ("ellipsis", re.compile(r"(\.\.\.|…)[\"'“”»]?"))):
        if pattern.fullmatch(word):
            return name
    return "lowercase follows" if after[:1].islower() else "plausible"


def evaluate(split: Splitter, lines: list[str], k: int, examples: dict | None) -> dict:
    groups = [lines[i:i + k] for i in range(0, len(lines) - k + 1, k)]
    texts = [" ".join(g) for g in groups]
    times, outs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        outs = [split(t) for t in texts]
        times.append(time.perf_counter() - t0)
    tp = found = gold_n = exact = 0
    for g, text, pieces in zip(groups, texts, outs):
        gold = set(starts(text, g)[1:])
        pred = starts(text, pieces)
        ends = pred[1:] + [len(text)]
        pred_b = set(pred[1:])
        tp, found, gold_n = tp + len(gold & pred_b), found + len(pred_b), gold_n + len(gold)
        exact += [text[s:e].strip() for s, e in zip(pred, ends)] == g
        if examples is not None:
            for b, is_gold in [(b, False) for b in sorted(pred_b - gold)] + [(b, True) for b in sorted(gold - pred_b)]:
                entry = examples.setdefault(kind(text, b, is_gold), {"count": 0, "examples": []})
                entry["count"] += 1
                if len(entry["examples"]) < 5:
                    entry["examples"].append(f"{text[max(0, b - 45):b]}⟂{text[b:b + 30]}")
    return {"k": k, "groups": len(groups), "recall": tp / gold_n, "precision": tp / found if found else 0.0,
            "exact": exact / len(groups), "sent_per_s": len(groups) * k / statistics.median(times)}


def install_sizes(venvs: Path) -> dict[str, float]:
    """MiB added to a bare venv's site-packages by each candidate's own venv (with its dependencies)."""
    def mib(name: str) -> float:
        sp = next((venvs / name / "lib").glob("python*/site-packages"))
        return int(subprocess.run(["du", "-sk", str(sp)], capture_output=True, text=True).stdout.split()[0]) / 1024
    if not (venvs / "bare").is_dir():
        return {}
    base = mib("bare")
    return {d.name: round(mib(d.name) - base, 1) for d in sorted(venvs.iterdir())
            if d.is_dir() and d.name != "bare" and (d / "lib").is_dir()}


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for dist in ("pysbd", "sentencex", "sentence-splitter", "blingfire", "syntok", "numpy", "regex"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def main() -> None:
    venvs = Path(sys.argv[sys.argv.index("--venvs") + 1] if "--venvs" in sys.argv else "/tmp/segvenvs")
    sets = [("iwslt14", lang, [DATA / f"iwslt14/test.{lang}.gz"], False) for lang in ("de", "en")]
    sets += [("multi30k", lang, [DATA / f"multi30k/{s}.{lang}.gz" for s in ("val", "test_2016_flickr")], True)
             for lang in ("de", "en", "fr", "cs")]
    rows: list[dict] = []
    examples: dict[str, dict[str, dict]] = {}  # candidate → language → error kind → its count and examples
    appended: dict[str, int] = {}
    for dataset, lang, paths, add in sets:
        lines: list[str] = []
        for p in paths:
            got, n = read(p, add)
            lines += got
            if add:
                appended[p.name] = n
        for name, (split, used) in make_splitters(lang).items():
            for k in (3, 6):
                ex = examples.setdefault(name, {}).setdefault(lang, {}) if dataset == "iwslt14" and k == 3 else None
                r = evaluate(split, lines, k, ex)
                rows.append({"candidate": name, "language": lang if used in (lang, "any") else f"{lang}→{used}",
                             "dataset": dataset, **r})
                print(f"  {name} {lang} {dataset} k={k} done", file=sys.stderr)
    sizes = install_sizes(venvs)
    print("| candidate | language | dataset | k | recall | precision | exact groups | sentences/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidate']} | {r['language']} | {r['dataset']} | {r['k']} | {r['recall']:.3f} | "
              f"{r['precision']:.3f} | {r['exact']:.3f} | {r['sent_per_s']:,.0f} |")
    print("\n| venv | MiB added to site-packages |\n|---|---|")
    for name, mb in sizes.items():
        print(f"| {name} | {mb} |")
    kinds = sorted({k for c in examples.values() for lg in c.values() for k in lg})
    print("\nIWSLT k=3 errors by kind (de / en)\n\n| candidate | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for name, by_lang in examples.items():
        cells = [" / ".join(str(by_lang.get(lg, {}).get(k, {}).get("count", 0)) for lg in ("de", "en")) for k in kinds]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nversions: {versions()}\nMulti30k captions given a final '.': {appended}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"segmenters-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps({"rows": rows, "install_mib": sizes, "versions": versions(),
                               "periods_appended": appended, "examples_iwslt_k3": examples},
                              ensure_ascii=False, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
