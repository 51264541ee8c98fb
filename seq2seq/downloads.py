"""`seq2seq data`: fetch a public parallel corpus (checksums verified), or take it from a local directory, and extract
it to the plain parallel text files the trainer reads (PREFIX.SRC + PREFIX.TGT, one sentence per line).

The registry (`CORPORA`) is data: one `Corpus` per corpus, with the files as published (URL, checksum, algorithm) and
a `kind` that picks the extractor. A file with no published checksum is trusted on first use: its SHA-256 is recorded
in `seq2seq-data.lock` next to the data and checked on every later run.
"""
from __future__ import annotations

import hashlib
import html
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from seq2seq.errors import UserError

LOCK_NAME = "seq2seq-data.lock"
ALGORITHMS = ("sha256", "md5")
USER_AGENT = "seq2seq-nmt data fetcher (Python urllib)"


@dataclass(frozen=True)
class Download:
    """One file as its publisher serves it. `name` is what it is saved as, and what `--local DIR` looks for."""

    url: str
    name: str
    checksum: Optional[str]  # None: nothing published; trusted on first use (recorded in the lock file)
    algorithm: str = "sha256"  # of `checksum`: "sha256" or "md5"


@dataclass(frozen=True)
class Split:
    """One output set, PREFIX.SRC + PREFIX.TGT. Either read from archive members (concatenated in order; `{pair}`
    and `{lang}` are filled in), or, with `every`, held out of train: pair number n (from 1) goes here when
    n % every == remainder."""

    name: str
    members: tuple[str, ...] = ()
    every: int = 0
    remainder: int = 0


@dataclass(frozen=True)
class Corpus:
    name: str
    src: str
    tgt: str
    description: str
    train_pairs: str  # as published (or an estimate, marked so)
    download_size: str  # likewise
    downloads: tuple[Download, ...]
    kind: str  # "files": the downloads are the data as they are; "iwslt": a TED .tgz; "tsv-zip": a zipped TSV
    splits: tuple[Split, ...] = ()
    columns: tuple[str, ...] = ()  # tsv-zip: the language of each leading column
    member: str = ""  # tsv-zip: the TSV inside the zip
    languages: tuple[str, ...] = field(default=())  # files: every language the files cover (else src, tgt)

    @property
    def pair(self) -> str:
        return ",".join(self.languages) if self.languages else f"{self.src}-{self.tgt}"

    @property
    def trusted_on_first_use(self) -> bool:
        return any(d.checksum is None for d in self.downloads)


MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}"
# SHA-256 of the gzip files at multi30k/dataset commit a3d2e0d (data/task1/raw).
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
}

# The TED sets of fairseq's examples/translation/prepare-iwslt14.sh: test = these five, in this order (6,750 pairs).
_IWSLT14_TEST = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
                 "IWSLT14.TED.tst2012")
_STANFORD_WMT14 = "https://nlp.stanford.edu/projects/nmt/data/wmt14.en-de/{name}"

CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus(
        name="multi30k", src="de", tgt="en", languages=("de", "en", "fr", "cs"),
        description="Multi30k task 1: image descriptions (Elliott et al. 2016); train, val, test_2016_flickr",
        train_pairs="29,000", download_size="2.6 MB", kind="files",
        downloads=tuple(Download(MULTI30K_URL.format(name=n), n, s) for n, s in MULTI30K_SHA256.items()),
    ),
    Corpus(
        name="iwslt14-de-en", src="de", tgt="en",
        description="IWSLT 2014 TED talks, the archive fairseq's prepare-iwslt14.sh fetches; valid = every 23rd "
                    "training pair, test = TED.dev2010 + TEDX.dev2012 + TED.tst2010-2012 (fairseq's split)",
        train_pairs="160k+", download_size="?",
        kind="iwslt",
        # URL: fairseq examples/translation/prepare-iwslt14.sh (the WIT3 original, wit3.fbk.eu/archive/2014-01/
        # texts/de/en/de-en.tgz, is gone). No checksum is published for it anywhere we looked (fairseq, torchtext,
        # sacrebleu): trusted on first use.
        downloads=(Download("https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz", "de-en.tgz", None),),
        splits=(
            Split("train", ("train.tags.{pair}.{lang}",)),
            Split("valid", every=23, remainder=0),
            Split("test", tuple(f"{s}.{{pair}}.{{lang}}.xml" for s in _IWSLT14_TEST)),
        ),
    ),
    Corpus(
        name="iwslt17-de-en", src="de", tgt="en",
        description="IWSLT 2017 TED talks (WIT3 2017-01-trnted); valid = TED.dev2010, test = TED.tst2010 "
                    "(torchtext's IWSLT2017 split)",
        train_pairs="206,112", download_size="16.8 MB", kind="iwslt",
        # SHA-256 and size (16,751,373 bytes) as published by Hugging Face datasets, datasets/iwslt2017/
        # dataset_infos.json ("iwslt2017-de-en" download_checksums), for this URL at the pinned revision ebd7c60.
        # The same archive from WIT3's own mirror, raw.githubusercontent.com/hlt-mt/WIT3/master/archive/2017-01-trnted/
        # texts/de/en/de-en.tgz, has the MD5 ca2b94d694150d4d6c5dc64c200fa589 (sacrebleu, sacrebleu/dataset/
        # iwslt_xml.py, "iwslt17/dev2010"). Pair counts: torchtext datasets/iwslt2017.py NUM_LINES.
        downloads=(Download("https://huggingface.co/datasets/iwslt2017/resolve/ebd7c60d9800c2a1be010a227e5f0a2363730f7a"
                            "/data/2017-01-trnted/texts/de/en/de-en.tgz", "de-en.tgz",
                            "ebcd53c53c8df742437e3a0fb964772e78764c3f6d4e38df0b6a2f71abc3a8b4", "sha256"),),
        splits=(
            Split("train", ("train.tags.{pair}.{lang}",)),
            Split("valid", ("IWSLT17.TED.dev2010.{pair}.{lang}.xml",)),
            Split("test", ("IWSLT17.TED.tst2010.{pair}.{lang}.xml",)),
        ),
    ),
    Corpus(
        name="wmt14-en-de", src="en", tgt="de",
        description="WMT'14 English-German as preprocessed (Moses-tokenized) by Stanford NLP for Luong et al. "
                    "2015: train, newstest2013 (valid), newstest2014 (test)",
        train_pairs="4.5M", download_size="~1.3 GB (est.)", kind="files",
        # URLs: nlp.stanford.edu/projects/nmt (also used by OpenNMT and sockeye tutorials). Stanford publishes no
        # checksums: each file is trusted on first use.
        downloads=tuple(Download(_STANFORD_WMT14.format(name=n), n, None) for n in (
            "train.en", "train.de", "newstest2013.en", "newstest2013.de", "newstest2014.en", "newstest2014.de")),
    ),
    Corpus(
        name="tatoeba-de-en", src="de", tgt="en",
        description="Tatoeba sentence pairs as manythings.org packs them for Anki (deu-eng.zip, deu.txt: "
                    "English TAB German TAB attribution); valid and test = every 100th pair (the 50th, the 100th)",
        train_pairs="200k+ (grows)", download_size="~10 MB (est.)", kind="tsv-zip",
        # manythings.org rebuilds deu-eng.zip from Tatoeba regularly and publishes no checksum, and there is no
        # versioned release of it: trusted on first use. CC-BY 2.0 (France), attribution in the third column.
        downloads=(Download("https://www.manythings.org/anki/deu-eng.zip", "deu-eng.zip", None),),
        member="deu.txt", columns=("en", "de"),
        splits=(Split("train"), Split("valid", every=100, remainder=50), Split("test", every=100, remainder=0)),
    ),
)}


@dataclass
class Fetched:
    """What `fetch` left in the output directory."""

    corpus: Corpus
    output: Path
    files: list[Path]
    pairs: dict[str, int]  # split -> pairs written (extracted corpora only)
    changed: bool  # False: everything was already in place and verified
    trusted_now: list[str]  # files trusted on first use by this run (their SHA-256 newly recorded)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise UserError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)} (seq2seq data --list)")
    return CORPORA[name]


def fetch(name: str, output_dir: str | Path, local_dir: Optional[str | Path] = None) -> Fetched:
    """Place corpus `name` in `output_dir`: each published file from `local_dir` if given (as published, e.g. the
    .tgz), else downloaded; checked against its checksum; then extracted to PREFIX.SRC + PREFIX.TGT files.

    Files already present and correct are kept; when everything is, nothing is done. Any failure leaves no partial
    file behind and raises UserError.
    """
    corpus = get_corpus(name)
    for d in corpus.downloads:
        if d.algorithm not in ALGORITHMS:
            raise UserError(f"{corpus.name}: {d.name}: unknown checksum algorithm {d.algorithm!r}")
    if local_dir is not None and not Path(local_dir).is_dir():
        raise UserError(f"--local {local_dir}: not a directory")
    out = Path(output_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    try:
        return _fetch(corpus, out, Path(local_dir) if local_dir is not None else None)
    except OSError as err:  # a full disk, a permission: one line too
        raise UserError(f"{err.filename or out}: {err.strerror or err}") from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before placing anything leaves no empty folder either


def fetch_multi30k(output_dir: str | Path, local_dir: Optional[str | Path] = None) -> list[Path]:
    """Place the Multi30k task-1 raw files in `output_dir`, from `local_dir` if given, else from GitHub."""
    return fetch("multi30k", output_dir, local_dir).files


def _fetch(corpus: Corpus, out: Path, local: Optional[Path]) -> Fetched:
    lock_path = out / LOCK_NAME
    needs_lock = corpus.kind != "files" or corpus.trusted_on_first_use  # pinned plain files check themselves
    lock: dict[str, Any] = (_read_lock(lock_path, corpus) if needs_lock
                            else {"corpus": corpus.name, "downloads": {}, "outputs": {}})
    if corpus.kind != "files" and _extracted_in_place(corpus, out, lock):
        files = [out / n for n in lock["outputs"]]
        recorded = lock.get("pairs", {})
        pairs = {s.name: recorded[s.name] for s in corpus.splits if s.name in recorded}  # in the registry's order
        return Fetched(corpus, out, files, pairs, False, [])

    placed: list[Path] = []  # archives this run downloaded or copied
    trusted_now: list[str] = []
    changed = False
    for d in corpus.downloads:
        recorded = lock["downloads"].get(d.name, {}).get("sha256") if d.checksum is None else None
        target = out / d.name
        have = file_digest(target, d.algorithm if d.checksum else "sha256") if target.is_file() else None
        expected = d.checksum or recorded  # None: a file trusted on first use, not recorded yet
        if have is not None and (expected is None or have == expected):
            actual = have
        else:
            actual = _obtain(d, target, local, recorded, lock_path)
            placed.append(target)
            changed = True
        if d.checksum is None:
            if recorded is None:
                trusted_now.append(d.name)
            lock["downloads"][d.name] = {"url": d.url, "sha256": actual, "trusted_on_first_use": True}
        else:
            lock["downloads"][d.name] = {"url": d.url, d.algorithm: d.checksum}
        if corpus.kind == "files" and corpus.trusted_on_first_use:
            _write_lock(lock_path, lock)  # a file trusted is recorded at once, even if a later one fails
    if corpus.kind == "files":
        return Fetched(corpus, out, [out / d.name for d in corpus.downloads], {}, changed, trusted_now)

    try:
        pairs, outputs = _extract(corpus, [out / d.name for d in corpus.downloads], out)
    except UserError:
        for path in placed:  # an archive that cannot be read is not kept (nor trusted)
            path.unlink(missing_ok=True)
        raise
    lock["outputs"] = {p.name: sha256(p) for p in outputs}
    lock["pairs"] = pairs
    _write_lock(lock_path, lock)
    return Fetched(corpus, out, outputs, pairs, True, trusted_now)


def _obtain(d: Download, target: Path, local: Optional[Path], recorded: Optional[str], lock_path: Path) -> str:
    """Copy or download `d` to `target` through a .part file; verify it; return its checksum (SHA-256 if TOFU)."""
    part = target.with_name(target.name + ".part")
    try:
        if local is not None:
            source = local / d.name
            if not source.is_file():
                raise UserError(f"{source} not found in the local directory")
            shutil.copyfile(source, part)
        else:
            _download(d.url, part)
        if d.checksum is not None:
            actual = file_digest(part, d.algorithm)
            if actual != d.checksum:
                raise UserError(f"checksum mismatch for {d.name}: expected {d.algorithm} {d.checksum}, got {actual}")
        else:
            actual = sha256(part)
            if recorded is not None and actual != recorded:
                raise UserError(f"{d.name} changed since its first use: {lock_path} records sha256 {recorded}, got "
                                f"{actual}; if the publisher updated it, delete {lock_path} to trust the new file")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)
    return actual


def _download(url: str, target: Path) -> None:
    if sys.stderr.isatty():  # progress for a person watching; a script's stderr keeps to the one-line errors
        print(f"seq2seq data: downloading {url}", file=sys.stderr)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as out:
            if response.headers.get_content_type() == "text/html":
                raise UserError(f"{url} returned a web page, not the file (download it in a browser and use --local)")
            shutil.copyfileobj(response, out, 1 << 20)
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and out.tell() != int(expected):
                raise UserError(f"download of {url} stopped after {out.tell()} of {expected} bytes")
    except (OSError, http.client.HTTPException) as err:
        raise UserError(f"download of {url} failed: {err}") from None


def _read_lock(path: Path, corpus: Corpus) -> dict:
    empty = {"corpus": corpus.name, "downloads": {}, "outputs": {}}
    if not path.is_file():
        return empty
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable lock file ({err}); delete it to start over") from None
    if not isinstance(lock, dict) or lock.get("corpus") != corpus.name:
        raise UserError(f"{path} belongs to corpus {lock.get('corpus') if isinstance(lock, dict) else '?'!r}, "
                        f"not {corpus.name!r}: use another --output")
    lock.setdefault("downloads", {})
    lock.setdefault("outputs", {})
    return lock


def _write_lock(path: Path, lock: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _extracted_in_place(corpus: Corpus, out: Path, lock: dict) -> bool:
    """The lock says these outputs came from the archives the registry names, and each output is unchanged."""
    if not lock["outputs"]:
        return False
    for d in corpus.downloads:
        entry = lock["downloads"].get(d.name)
        if entry is None or (d.checksum is not None and entry.get(d.algorithm) != d.checksum):
            return False
    return all((out / name).is_file() and sha256(out / name) == digest for name, digest in lock["outputs"].items())


# ---- extraction ----------------------------------------------------------------------------------------------

Pairs = tuple[list[str], list[str]]
_METADATA = re.compile(r"\s*</?(url|keywords|speaker|talkid|title|description|reviewer|translator|doc|transcript)\b")
_SEGMENT = re.compile(r"<seg\b[^>]*>(.*?)</seg>", re.S)


def _clean(text: str) -> str:
    """One line of text: whitespace runs (line and paragraph separators too) become one space."""
    return " ".join(text.split())


@contextmanager
def _archive_members(path: Path) -> Iterator[dict[str, Callable[[], bytes]]]:
    """Regular files of a .tgz/.tar or .zip, by base name (the archives put them under a folder such as de-en/)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield {Path(n).name: partial(archive.read, n) for n in archive.namelist() if not n.endswith("/")}
        return
    with tarfile.open(path, "r:*") as tar:

        def read(member: tarfile.TarInfo) -> bytes:
            content = tar.extractfile(member)
            assert content is not None  # only regular files are listed, and those always have content
            return content.read()

        yield {Path(m.name).name: partial(read, m) for m in tar.getmembers() if m.isfile()}


def _lines(text: str) -> list[str]:
    """Lines split at \\n only: str.splitlines would also split at U+0085 and U+2028, and a sentence may hold those."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _text(read: Callable[[], bytes], name: str) -> str:
    try:
        return read().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{name} in the archive is not UTF-8 text ({err.reason})") from None


def _iwslt_side(members: dict, pattern: str, corpus: Corpus, lang: str) -> list[str]:
    name = pattern.format(pair=f"{corpus.src}-{corpus.tgt}", lang=lang)
    if name not in members:
        raise UserError(f"{name} is missing from {corpus.downloads[0].name}: not the {corpus.name} archive")
    text = _text(members[name], name)
    if name.endswith(".xml"):  # dev/test sets: the text of each <seg id="N">, XML entities decoded
        return [_clean(html.unescape(seg)) for seg in _SEGMENT.findall(text)]
    # train.tags.*: one sentence per line, with the talks' metadata lines (<url>, <talkid>, <title>, ...) between
    return [_clean(line) for line in _lines(text) if not _METADATA.match(line)]


def _read_iwslt(corpus: Corpus, archives: list[Path]) -> dict[str, Pairs]:
    sets = {}
    with _archive_members(archives[0]) as members:
        for split in corpus.splits:
            if split.members:
                src = [s for m in split.members for s in _iwslt_side(members, m, corpus, corpus.src)]
                tgt = [s for m in split.members for s in _iwslt_side(members, m, corpus, corpus.tgt)]
                sets[split.name] = (src, tgt)
    return sets


def _read_tsv_zip(corpus: Corpus, archives: list[Path]) -> dict[str, Pairs]:
    with _archive_members(archives[0]) as members:
        if corpus.member not in members:
            raise UserError(f"{corpus.member} is missing from {archives[0].name}: not the {corpus.name} archive")
        text = _text(members[corpus.member], corpus.member)
    columns = {lang: i for i, lang in enumerate(corpus.columns)}
    src, tgt = [], []
    for number, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) < len(corpus.columns):
            raise UserError(f"{corpus.member}:{number}: expected {len(corpus.columns)} tab-separated columns, "
                            f"got {len(fields)}")
        src.append(_clean(fields[columns[corpus.src]]))
        tgt.append(_clean(fields[columns[corpus.tgt]]))
    return {"train": (src, tgt)}


EXTRACTORS: dict[str, Callable[[Corpus, list[Path]], dict[str, Pairs]]] = {
    "iwslt": _read_iwslt,
    "tsv-zip": _read_tsv_zip,
}


def _extract(corpus: Corpus, archives: list[Path], out: Path) -> tuple[dict[str, int], list[Path]]:
    """Read the sets out of the archives, hold out the `every` splits from train, and write PREFIX.SRC/PREFIX.TGT
    for each split, all or nothing."""
    try:
        sets = EXTRACTORS[corpus.kind](corpus, archives)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise UserError(f"{archives[0].name} is damaged or not an archive ({type(err).__name__}: {err})") from None
    for name, (src, tgt) in sets.items():
        if len(src) != len(tgt):
            raise UserError(f"{corpus.name} {name}: {len(src)} {corpus.src} sentences but {len(tgt)} {corpus.tgt} "
                            "(the archive is damaged or not laid out as expected)")
    held = [s for s in corpus.splits if s.every]
    if held:
        src, tgt = sets["train"]
        keep = [True] * len(src)
        for split in held:
            picked = [i for i in range(len(src)) if (i + 1) % split.every == split.remainder]
            sets[split.name] = ([src[i] for i in picked], [tgt[i] for i in picked])
            for i in picked:
                keep[i] = False
        sets["train"] = ([s for s, k in zip(src, keep) if k], [t for t, k in zip(tgt, keep) if k])
    if not sets.get("train", ([], []))[0]:
        raise UserError(f"{archives[0].name} holds no {corpus.name} training pairs: not the archive expected")

    written: list[tuple[Path, Path]] = []
    try:
        for split in corpus.splits:
            for lang, lines in zip((corpus.src, corpus.tgt), sets[split.name]):
                final = out / f"{split.name}.{lang}"
                partial = out / f".{final.name}.partial"
                with open(partial, "w", encoding="utf-8", newline="\n") as f:
                    f.writelines(line + "\n" for line in lines)
                written.append((partial, final))
    except BaseException:
        for partial, _ in written:
            partial.unlink(missing_ok=True)
        raise
    for partial, final in written:
        os.replace(partial, final)
    return {s.name: len(sets[s.name][0]) for s in corpus.splits}, [final for _, final in written]


# ---- listing -------------------------------------------------------------------------------------------------

def checksum_kind(corpus: Corpus) -> str:
    kinds = {d.algorithm if d.checksum else "first use" for d in corpus.downloads}
    return "+".join(sorted(kinds))


def listing() -> str:
    rows = [("NAME", "PAIR", "TRAIN PAIRS", "DOWNLOAD", "CHECKSUM")]
    rows += [(c.name, c.pair, c.train_pairs, c.download_size, checksum_kind(c)) for c in CORPORA.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines.append("")
    lines += [f"{c.name}: {c.description}" for c in CORPORA.values()]
    lines.append("")
    lines.append(f"CHECKSUM 'first use': nothing is published to check against, so the file's SHA-256 is recorded in "
                 f"DIR/{LOCK_NAME} at the first download and checked on every later run.")
    return "\n".join(lines)
