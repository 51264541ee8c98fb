"""`seq2seq data`: the corpus registry, checksums (published or trusted on first use), extraction of IWSLT .tgz and
Tatoeba .zip archives to parallel text, and one-line errors. Small archives built here in the published layouts;
no network (urlopen is replaced where a download is exercised)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from seq2seq import downloads
from seq2seq.cli import main
from seq2seq.downloads import CORPORA, LOCK_NAME

SHARED = Path(__file__).resolve().parents[2] / "shared"
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K", SHARED / "data" / "multi30k"))  # as conftest.py finds it

TALKS = [  # (de, en) lines of two talks
    [("Vielen Dank, Chris.", "Thank you so much, Chris."), ("Es ist mir eine Ehre.", "It's truly a great honor."),
     ("Ich bin begeistert\u0085 wirklich.", "I have been blown away\u0085 really.")],
    [(f"Satz {i}.", f"Sentence {i}.") for i in range(1, 45)],
]


def _train_tags(lang: str) -> str:
    """train.tags.de-en.LANG as WIT3 ships it: metadata lines around each talk's sentences."""
    out = []
    for number, talk in enumerate(TALKS, 1):
        out += [f"<url>http://www.ted.com/talks/lang/{lang}/talk_{number}.html</url>",
                "<keywords>talks, culture</keywords>", "<speaker>A Speaker</speaker>", f"<talkid>{number}</talkid>",
                f"<title>Talk {number} ({lang})</title>", f"<description>TED Talk Subtitles ({lang})</description>",
                '<reviewer href="http://www.ted.com/profiles/1">R</reviewer>',
                '<translator href="http://www.ted.com/profiles/2">T</translator>']
        out += [f"  {pair[0 if lang == 'de' else 1]} " for pair in talk]
    return "\n".join(out) + "\n"


def _xml(setid: str, lang: str, segments: list[str]) -> str:
    """An IWSLT dev/test file: <seg id> elements inside one talk's <doc>, XML-escaped."""
    kind = "srcset" if lang == "de" else "refset"
    segs = "\n".join(f'<seg id="{i}"> {s} </seg>' for i, s in enumerate(segments, 1))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n<{kind} setid="{setid}" srclang="german">\n'
            f'<doc docid="535" genre="lectures">\n<url>http://www.ted.com/talks/x.html</url>\n'
            f"<description>TED Talk Subtitles and Transcript</description>\n<keywords>talks</keywords>\n"
            f"<talkid>535</talkid>\n<title>A title</title>\n{segs}\n</doc>\n</{kind}>\n</mteval>\n")


def _segments(setid: str, lang: str) -> list[str]:
    return [f"{setid} {lang} one &amp; &quot;two&quot;", f"{setid} {lang} two &lt;3"]


def _tgz(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"de-en/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def iwslt_archive(folder: Path, year: int, sets: list[str]) -> Path:
    """de-en.tgz in the WIT3 layout: de-en/train.tags.de-en.{de,en}, de-en/IWSLT{yy}.<set>.de-en.{de,en}.xml, README."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {f"train.tags.de-en.{lang}": _train_tags(lang) for lang in ("de", "en")}
    for setid in sets:
        for lang in ("de", "en"):
            files[f"IWSLT{year}.{setid}.de-en.{lang}.xml"] = _xml(setid, lang, _segments(setid, lang))
    files["README"] = "IWSLT README\n"
    return _tgz(folder / "de-en.tgz", files)


IWSLT14_SETS = ["TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"]


def digest(path: Path, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def pin(monkeypatch, name: str, checksum: str | None, algorithm: str = "sha256", **changes) -> None:
    """Give the registry entry's (single) download this checksum, as a test stand-in for the published one."""
    corpus = CORPORA[name]
    download = dataclasses.replace(corpus.downloads[0], checksum=checksum, algorithm=algorithm)
    monkeypatch.setitem(CORPORA, name, dataclasses.replace(corpus, downloads=(download,), **changes))


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_iwslt14_extracts_aligned_text_with_fairseq_split_trusting_first_use(tmp_path, capsys):
    archive = iwslt_archive(tmp_path / "local", 14, IWSLT14_SETS)
    out = tmp_path / "out"
    assert main(["data", "iwslt14-de-en", "--local", str(archive.parent), "--output", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert "train 45, valid 2, test 10 pairs" in stdout
    assert "trust on first use" in stderr

    sentences = [pair for talk in TALKS for pair in talk]  # 47 pairs: numbers 23 and 46 are held out as valid
    de, en = read(out / "train.de"), read(out / "train.en")
    assert len(de) == len(en) == 45
    assert not any(line.startswith("<") or "Talk " in line or "Subtitles" in line for line in de + en)
    assert de[0] == "Vielen Dank, Chris." and en[0] == "Thank you so much, Chris."  # metadata gone, ends stripped
    assert de[2] == "Ich bin begeistert wirklich."  # U+0085 inside a sentence neither splits nor stays
    assert read(out / "valid.de") == [sentences[22][0], sentences[45][0]]
    assert read(out / "valid.en") == [sentences[22][1], sentences[45][1]]
    assert sentences[22][1] not in en
    test_de, test_en = read(out / "test.de"), read(out / "test.en")
    assert test_de[:2] == ['TED.dev2010 de one & "two"', "TED.dev2010 de two <3"]  # entities decoded
    assert [line.split()[0] for line in test_en[::2]] == IWSLT14_SETS  # fairseq's order
    lock = json.loads((out / LOCK_NAME).read_text())
    assert lock["downloads"]["de-en.tgz"] == {"url": CORPORA["iwslt14-de-en"].downloads[0].url,
                                              "sha256": digest(archive), "trusted_on_first_use": True}


def test_iwslt17_with_a_pinned_md5_reads_dev_and_test_xml(tmp_path, monkeypatch, capsys):
    archive = iwslt_archive(tmp_path / "local", 17, ["TED.dev2010", "TED.tst2010", "TED.tst2011"])
    pin(monkeypatch, "iwslt17-de-en", digest(archive, "md5"), "md5")
    out = tmp_path / "out"
    assert main(["data", "iwslt17-de-en", "--local", str(archive.parent), "--output", str(out)]) == 0
    assert "train 47, valid 2, test 2 pairs" in capsys.readouterr().out
    assert read(out / "valid.en") == ['TED.dev2010 en one & "two"', "TED.dev2010 en two <3"]
    assert read(out / "test.de") == ['TED.tst2010 de one & "two"', "TED.tst2010 de two <3"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["de-en.tgz", LOCK_NAME] + [f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("de", "en")])


def test_a_wrong_checksum_is_refused_in_one_line_and_leaves_no_file(tmp_path, monkeypatch, capsys):
    archive = iwslt_archive(tmp_path / "local", 17, ["TED.dev2010", "TED.tst2010"])
    pin(monkeypatch, "iwslt17-de-en", "0" * 64)
    out = tmp_path / "out"
    assert main(["data", "iwslt17-de-en", "--local", str(archive.parent), "--output", str(out)]) == 2
    line = one_error_line(capsys)
    assert "checksum mismatch for de-en.tgz" in line and digest(archive) in line
    assert not out.exists()

    out.mkdir()  # an existing destination keeps only what it had
    (out / "notes.txt").write_text("mine")
    assert main(["data", "iwslt17-de-en", "--local", str(archive.parent), "--output", str(out)]) == 2
    one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_second_run_with_everything_in_place_does_nothing(tmp_path, monkeypatch, capsys):
    archive = iwslt_archive(tmp_path / "local", 17, ["TED.dev2010", "TED.tst2010"])
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    out = tmp_path / "out"
    assert main(["data", "iwslt17-de-en", "--local", str(archive.parent), "--output", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("nothing should be fetched or extracted")

    monkeypatch.setattr(downloads, "_download", refuse)
    monkeypatch.setattr(downloads, "_extract", refuse)
    monkeypatch.setattr(downloads.shutil, "copyfile", refuse)
    assert main(["data", "iwslt17-de-en", "--output", str(out)]) == 0
    assert "already in place, verified" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    (out / "train.en").write_text("edited\n")  # an output that changed is extracted again from the kept archive
    monkeypatch.undo()
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    assert main(["data", "iwslt17-de-en", "--output", str(out)]) == 0
    assert len(read(out / "train.en")) == 47


def test_a_file_trusted_on_first_use_must_not_change_later(tmp_path, capsys):
    archive = iwslt_archive(tmp_path / "local", 14, IWSLT14_SETS)
    out = tmp_path / "out"
    assert main(["data", "iwslt14-de-en", "--local", str(archive.parent), "--output", str(out)]) == 0
    recorded = json.loads((out / LOCK_NAME).read_text())["downloads"]["de-en.tgz"]["sha256"]
    capsys.readouterr()

    for name in ("de-en.tgz", "train.de"):
        (out / name).unlink()
    iwslt_archive(tmp_path / "local", 14, IWSLT14_SETS[:4])  # the "published" archive changed
    assert main(["data", "iwslt14-de-en", "--local", str(archive.parent), "--output", str(out)]) == 2
    line = one_error_line(capsys)
    assert "de-en.tgz changed since its first use" in line and recorded in line and LOCK_NAME in line
    assert not (out / "de-en.tgz").exists() and not (out / "de-en.tgz.part").exists()


def test_a_damaged_archive_exits_2_in_one_line_and_is_not_kept(tmp_path, monkeypatch, capsys):
    local = tmp_path / "local"
    local.mkdir()
    archive = local / "de-en.tgz"
    archive.write_bytes(iwslt_archive(tmp_path / "whole", 17, ["TED.dev2010"]).read_bytes()[:300])  # truncated
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    out = tmp_path / "out"
    assert main(["data", "iwslt17-de-en", "--local", str(local), "--output", str(out)]) == 2
    assert "de-en.tgz is damaged or not an archive" in one_error_line(capsys)
    assert not out.exists()

    archive.write_bytes(iwslt_archive(tmp_path / "whole", 17, ["TED.dev2010"]).read_bytes())  # no tst2010 inside
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    assert main(["data", "iwslt17-de-en", "--local", str(local), "--output", str(out)]) == 2
    assert "IWSLT17.TED.tst2010.de-en.de.xml is missing from de-en.tgz" in one_error_line(capsys)
    assert not out.exists()


def test_misaligned_sides_are_refused(tmp_path, monkeypatch, capsys):
    files = {f"train.tags.de-en.{lang}": _train_tags(lang) for lang in ("de", "en")}
    files["train.tags.de-en.en"] += "one more line\n"
    for setid in ("TED.dev2010", "TED.tst2010"):
        for lang in ("de", "en"):
            files[f"IWSLT17.{setid}.de-en.{lang}.xml"] = _xml(setid, lang, _segments(setid, lang))
    (tmp_path / "local").mkdir()
    archive = _tgz(tmp_path / "local" / "de-en.tgz", files)
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    assert main(["data", "iwslt17-de-en", "--local", str(archive.parent), "--output", str(tmp_path / "o")]) == 2
    assert "train: 47 de sentences but 48 en" in one_error_line(capsys)


def test_tatoeba_zip_gives_train_valid_test_in_the_right_columns(tmp_path, capsys):
    local = tmp_path / "local"
    local.mkdir()
    rows = [f"English {i}.\tDeutsch {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} (x) & #{i + 1} (y)"
            for i in range(1, 201)]
    with zipfile.ZipFile(local / "deu-eng.zip", "w") as z:
        z.writestr("deu.txt", "\n".join(rows) + "\n")
        z.writestr("_about.txt", "about\n")
    out = tmp_path / "out"
    assert main(["data", "tatoeba-de-en", "--local", str(local), "--output", str(out)]) == 0
    assert "train 196, valid 2, test 2 pairs" in capsys.readouterr().out
    assert read(out / "valid.de") == ["Deutsch 50.", "Deutsch 150."]
    assert read(out / "valid.en") == ["English 50.", "English 150."]
    assert read(out / "test.en") == ["English 100.", "English 200."]
    train_de, train_en = read(out / "train.de"), read(out / "train.en")
    assert train_de[0] == "Deutsch 1." and train_en[0] == "English 1." and len(train_de) == len(train_en) == 196
    assert "Deutsch 50." not in train_de and not any("tatoeba.org" in line for line in train_en + train_de)


def test_plain_files_trusted_on_first_use_are_checked_again(tmp_path, monkeypatch, capsys):
    """wmt14-en-de's kind: the published files are the data; each SHA-256 is recorded at first use."""
    local = tmp_path / "local"
    local.mkdir()
    for d in CORPORA["wmt14-en-de"].downloads:
        (local / d.name).write_text(f"{d.name} line\n")
    out = tmp_path / "out"
    assert main(["data", "wmt14-en-de", "--local", str(local), "--output", str(out)]) == 0
    assert "6 files verified" in capsys.readouterr().out
    recorded = json.loads((out / LOCK_NAME).read_text())["downloads"]
    assert recorded["train.en"]["sha256"] == digest(local / "train.en")

    (out / "train.en").write_text("corrupted\n")  # a changed copy is replaced from the source, checked again
    assert main(["data", "wmt14-en-de", "--local", str(local), "--output", str(out)]) == 0
    assert (out / "train.en").read_text() == "train.en line\n"
    (out / "train.en").unlink()
    (local / "train.en").write_text("the publisher's file changed\n")
    assert main(["data", "wmt14-en-de", "--local", str(local), "--output", str(out)]) == 2
    assert "train.en changed since its first use" in one_error_line(capsys)
    assert not (out / "train.en").exists()


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, content_type: str, length: int | None = None):
        super().__init__(data)
        import email.message

        self.headers = email.message.Message()
        self.headers["Content-Type"] = content_type
        self.headers["Content-Length"] = str(len(data) if length is None else length)


def test_download_through_a_part_file_refuses_web_pages_and_short_reads(tmp_path, monkeypatch, capsys):
    archive = iwslt_archive(tmp_path / "published", 17, ["TED.dev2010", "TED.tst2010"])
    pin(monkeypatch, "iwslt17-de-en", digest(archive))
    served = {}
    monkeypatch.setattr(downloads.urllib.request, "urlopen", lambda request, timeout: served["response"])
    out = tmp_path / "out"

    served["response"] = FakeResponse(b"<html>Sign in</html>", "text/html; charset=utf-8")
    assert main(["data", "iwslt17-de-en", "--output", str(out)]) == 2
    assert "returned a web page" in one_error_line(capsys) and not out.exists()

    served["response"] = FakeResponse(archive.read_bytes()[:1000], "application/octet-stream", length=5000)
    assert main(["data", "iwslt17-de-en", "--output", str(out)]) == 2
    assert "stopped after 1000 of 5000 bytes" in one_error_line(capsys) and not out.exists()

    served["response"] = FakeResponse(archive.read_bytes(), "application/octet-stream")
    assert main(["data", "iwslt17-de-en", "--output", str(out)]) == 0
    assert (out / "de-en.tgz").read_bytes() == archive.read_bytes() and not (out / "de-en.tgz.part").exists()


def test_unknown_corpus_missing_local_file_and_no_name_exit_2_in_one_line(tmp_path, capsys):
    assert main(["data", "europarl"]) == 2
    line = one_error_line(capsys)
    assert "unknown corpus 'europarl'" in line and "iwslt14-de-en" in line
    assert main(["data"]) == 2
    assert "--list" in one_error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["data", "tatoeba-de-en", "--local", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert "deu-eng.zip not found in the local directory" in one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_list_shows_every_corpus_with_pair_size_and_checksum(capsys):
    assert main(["data", "--list"]) == 0
    out = capsys.readouterr().out
    for corpus in CORPORA.values():
        row = next(line for line in out.splitlines() if line.startswith(corpus.name + " "))
        assert corpus.pair in row and corpus.train_pairs in row and corpus.download_size in row
    assert "first use" in out and LOCK_NAME in out


def test_registry_entries_are_well_formed():
    for corpus in CORPORA.values():
        assert corpus.kind == "files" or corpus.kind in downloads.EXTRACTORS
        for d in corpus.downloads:
            assert d.url.startswith("https://") and d.algorithm in downloads.ALGORITHMS
            if d.checksum is not None:
                assert len(d.checksum) == {"sha256": 64, "md5": 32}[d.algorithm]
                int(d.checksum, 16)
        held = [{n for n in range(1, 1001) if n % s.every == s.remainder} for s in corpus.splits if s.every]
        assert all(not a & b for i, a in enumerate(held) for b in held[i + 1:])  # no pair held out twice
    assert CORPORA["iwslt17-de-en"].downloads[0].checksum  # a published checksum exists: it is used


def test_multi30k_as_before(tmp_path, capsys):
    """The Makefile's `seq2seq data multi30k --local DIR`: the 12 gzip files, checked, no lock file."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"no Multi30k copy at {MULTI30K}")
    out = tmp_path / "multi30k"
    assert main(["data", "multi30k", "--local", str(MULTI30K), "--output", str(out)]) == 0
    assert capsys.readouterr().out == f"12 files verified in {out}\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(downloads.MULTI30K_SHA256)
    assert main(["data", "multi30k", "--output", str(out)]) == 0  # present and correct: nothing fetched
    assert downloads.fetch_multi30k(out) == [out / name for name in downloads.MULTI30K_SHA256]
