"""Fault injection for the crash-safety tests.

SEQ2SEQ_KILL_AT=POINT:N makes the process SIGKILL itself the Nth time it reaches POINT, so a test can
kill training at an exact place instead of racing a timer:

- ``train-step``: inside a training step, after the backward pass and before the optimizer update;
- ``validation``: inside a validation, after the loss and before the translations;
- ``checkpoint-write``: half-way through writing a checkpoint's temporary file;
- ``prepare-encode``: while preparing training data, after a chunk of encoded pairs is written;
- ``distill-chunk``: while distilling, after a chunk of translations is committed.

SIGKILL cannot be caught, so nothing is flushed or cleaned up: the same as a real crash or an OOM kill.
Unset (always, outside those tests) a fault point costs one environment lookup.
"""
from __future__ import annotations

import os
import signal

POINTS = ("train-step", "validation", "checkpoint-write", "prepare-encode", "distill-chunk")
ENV = "SEQ2SEQ_KILL_AT"
_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process here if SEQ2SEQ_KILL_AT names this point and this is its Nth visit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
