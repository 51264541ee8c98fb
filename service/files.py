"""Translated files waiting to be downloaded (LibreTranslate's /translate_file answers a URL to fetch them from).

One folder; each file is named '<random hex>.<safe name>', so a name cannot leave the folder nor guess
another's, and each is removed once older than the expiry (checked whenever a file is stored or fetched).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

_UNSAFE = re.compile(r"[^\w.-]+")
_STORED = re.compile(r"[0-9a-f]{32}\.[\w-][\w.-]{0,120}")


class FileGone(LookupError):
    """No such file: never stored, expired, or a name that is not one of ours."""


def safe_name(name: str) -> str:
    """The file name without any folder (POSIX or Windows), in letters, digits, '.', '_' and '-', not hidden."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    cleaned = _UNSAFE.sub("_", base).lstrip("._") or "file"
    stem, dot, suffix = cleaned.rpartition(".")
    if dot and len(cleaned) > 120:  # keep the extension: it says the format
        return stem[: 119 - len(suffix)] + "." + suffix
    return cleaned[:120]


class FileStore:
    def __init__(self, folder: Optional[str], expiry_s: float):
        self.given = Path(folder) if folder else None
        self.expiry_s = expiry_s
        self.lock = threading.Lock()
        self._folder: Optional[Path] = None

    @property
    def folder(self) -> Path:
        """The configured folder, or a temporary one made when the first file comes (and removed by `close`)."""
        with self.lock:
            if self._folder is None:
                self._folder = self.given or Path(tempfile.mkdtemp(prefix="seq2seq-files-"))
                self._folder.mkdir(parents=True, exist_ok=True)
            return self._folder

    def close(self) -> None:
        """At shutdown: a temporary folder goes with its files (a configured one stays)."""
        if self._folder is not None and self.given is None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def put(self, name: str, data: bytes) -> str:
        """Store `data` as a download named after `name`; returns the name to fetch it by."""
        self.sweep()
        stored = f"{uuid.uuid4().hex}.{safe_name(name)}"
        partial = self.folder / f".{stored}.partial"  # never matches _STORED: not served until renamed
        partial.write_bytes(data)
        os.replace(partial, self.folder / stored)
        return stored

    def path(self, stored: str) -> Path:
        """The file stored as `stored`; FileGone when there is none (or it expired)."""
        self.sweep()
        if not _STORED.fullmatch(stored):
            raise FileGone(stored)
        path = self.folder / stored
        if not path.is_file():
            raise FileGone(stored)
        return path

    @staticmethod
    def download_name(stored: str) -> str:
        """The name the client sees: the one it uploaded, made safe, without our prefix."""
        return stored.split(".", 1)[1]

    def sweep(self) -> None:
        """Remove files older than the expiry."""
        oldest = time.time() - self.expiry_s
        folder = self.folder
        with self.lock:
            for path in folder.iterdir():
                try:
                    if path.stat().st_mtime < oldest:
                        path.unlink()
                except FileNotFoundError:  # another sweep took it
                    pass
