"""The decoder process: the served models' translators run in a process of their own.

Why a process and not a thread: beam search is thousands of small tensor operations, each taking and
releasing the interpreter lock. Sharing that lock with the event loop slowed both the decoding and the
requests around it; in its own process the decoder keeps its cores and the event loop stays responsive.
"""
from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any, Optional

from seq2seq.config import DecodeConfig, Device, ReducedPrecision
from seq2seq.translate import Translation

log = logging.getLogger("seq2seq.service")


class DecoderFailed(RuntimeError):
    """The decoder process died or could not start; it is restarted for the next batch."""


class DecoderProcess:
    """Translates batches in a child process holding one Translator per served model."""

    def __init__(self, checkpoints: dict[str, list[str]], *, device: Device, batch_tokens: int, threads: Optional[int],
                 precision: Optional[ReducedPrecision]):
        self.checkpoints = checkpoints  # model name → its checkpoint, or an ensemble's
        self.device, self.batch_tokens, self.threads, self.precision = device, batch_tokens, threads, precision
        self.process: Optional[multiprocessing.process.BaseProcess] = None
        self.connection: Optional[Connection] = None

    def start(self) -> None:
        """Start the child and wait until its models are loaded; raises DecoderFailed if it cannot."""
        # spawn, not fork: a forked child inherits the parent's OpenMP and tokenizer threads in a broken state.
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, name="seq2seq-decoder", daemon=True,
                                       args=(child_end, self.checkpoints, self.device, self.batch_tokens, self.threads,
                                             self.precision))
        self.process.start()
        child_end.close()
        self._reply()

    def translate(self, model_name: str, texts: list[str], options: DecodeConfig,
                  with_attention: bool) -> list[Translation]:
        if self.process is None or not self.process.is_alive():
            log.warning("decoder process is not running; starting it")
            self.stop()
            self.start()
        assert self.connection is not None  # start() opened it with the process
        try:
            self.connection.send((model_name, texts, options, with_attention))
        except (OSError, EOFError) as err:
            self.stop()
            raise DecoderFailed(f"decoder process unreachable: {err}") from None
        return self._reply()

    def stop(self) -> None:
        if self.process is None:
            return
        assert self.connection is not None  # opened before the process, closed with it
        try:
            self.connection.send(None)
        except (OSError, EOFError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()
        self.process = self.connection = None

    def _reply(self) -> Any:
        """The child's next answer: None once started, a batch's translations after each request."""
        assert self.connection is not None  # called only once start() opened it
        try:
            ok, value = self.connection.recv()
        except (OSError, EOFError):
            code = self.process.exitcode if self.process else None
            self.stop()
            raise DecoderFailed(f"decoder process exited (status {code})") from None
        if not ok:
            raise DecoderFailed(value)
        return value


def _serve(connection: Connection, checkpoints: dict[str, list[str]], device: str, batch_tokens: int,
           threads: Optional[int], precision: Optional[ReducedPrecision]) -> None:
    """The child's loop: load the models, then answer one batch at a time until told to stop."""
    import torch

    from seq2seq.translate import Translator

    if threads:
        torch.set_num_threads(threads)
    try:
        translators = {name: Translator(paths, device=device, batch_tokens=batch_tokens, precision=precision)
                       for name, paths in checkpoints.items()}
    except Exception as err:  # noqa: BLE001 - reported to the parent, which says why it cannot start
        connection.send((False, f"decoder could not load the models: {err}"))
        return
    connection.send((True, None))
    while (request := _next_request(connection)) is not None:
        name, texts, options, with_attention = request
        try:
            connection.send((True, translators[name].translate(texts, options, with_attention=with_attention)))
        except Exception as err:  # noqa: BLE001 - the batch's requests answer for it; the process lives on
            connection.send((False, f"{type(err).__name__}: {err}"))


def _next_request(connection: Connection):
    """The parent's next batch; None when it says stop or is gone (killed, or exited without saying stop)."""
    try:
        return connection.recv()
    except (EOFError, OSError):
        return None
