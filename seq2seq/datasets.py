"""`seq2seq data`: fetch a public corpus with checksum verification, or copy it from a local directory."""
from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path
from typing import Optional

from seq2seq.errors import UserError

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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {path.name}: expected {expected}, got {actual}")


def _download(url: str, target: Path) -> None:
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"download of {url} failed: {err}") from None
    tmp.replace(target)


def fetch_multi30k(output_dir: str | Path, local_dir: Optional[str | Path] = None) -> list[Path]:
    """Place the Multi30k task-1 raw files in `output_dir`, from `local_dir` if given, else from GitHub.

    Every file is checked against its SHA-256; files already present and correct are kept.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    placed = []
    for name, expected in MULTI30K_SHA256.items():
        target = out / name
        if target.exists() and sha256(target) == expected:
            placed.append(target)
            continue
        if local_dir is not None:
            source = Path(local_dir) / name
            if not source.is_file():
                raise UserError(f"{source} not found in the local directory")
            shutil.copyfile(source, target)
        else:
            _download(MULTI30K_URL.format(name=name), target)
        _verify(target, expected)
        placed.append(target)
    return placed
