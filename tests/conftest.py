"""Shared fixtures: real Multi30k data from ../shared/data (never downloaded), a trained tiny model."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def data_overrides() -> list[str]:
    """--set overrides pointing a config at the shared Multi30k copy."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"Multi30k not found at {MULTI30K}; set SEQ2SEQ_MULTI30K to its directory")
    return [f"data.train={MULTI30K}/train", f"data.valid={MULTI30K}/val"]


def run_cli(*args: str, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `seq2seq` command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "seq2seq", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml trained once through the CLI; later tests translate with its checkpoints."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    overrides = [x for o in data_overrides() for x in ("--set", o)]
    result = run_cli("train", "configs/tiny.yaml", "--run-dir", str(run_dir), *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="session")
def small_corpus() -> tuple[list[str], list[str]]:
    """The first 500 Multi30k training pairs (German, English)."""
    from seq2seq.corpus import read_parallel

    data_overrides()
    src, tgt = read_parallel(str(MULTI30K / "train"), "de", "en")
    return src[:500], tgt[:500]


@pytest.fixture(scope="session")
def toy_tokenizer(small_corpus):
    """A tiny joint SentencePiece model trained on 500 real pairs (well under a second)."""
    from seq2seq.config import TokenizerConfig
    from seq2seq.tokenizer import train_tokenizer

    src, tgt = small_corpus
    return train_tokenizer(src + tgt, TokenizerConfig(vocab_size=300))


@pytest.fixture(scope="session")
def checkpoint(tiny_run: Path) -> str:
    return str(tiny_run / "checkpoints/best.pt")


@pytest.fixture(scope="session")
def registry(checkpoint):
    """The tiny model loaded once for the service tests."""
    from service.models import ModelRegistry

    return ModelRegistry.load({"de-en": checkpoint}, device="cpu")


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """A real uvicorn server for `app` on a free loopback port, in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(registry):
    """A real uvicorn server on a free loopback port, for real clients (httpx, libretranslatepy, a browser)."""
    from service.app import create_app
    from service.settings import ServiceSettings

    with serve_in_thread(create_app(ServiceSettings(), registry)) as url:
        yield url
