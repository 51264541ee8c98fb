"""Large freed blocks are kept for reuse, so a per-step 40 MB tensor does not page-fault in again every step."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator settings")

# Page faults per decoding-like step: beam 5's logits and log-probabilities made, filled and freed. The
# first steps fault in either way, until the heap has room for both blocks.
FAULTS_PER_ROUND = """
import resource, sys, torch
from seq2seq.allocator import keep_large_blocks
applied = keep_large_blocks() if sys.argv[1] == "keep" else False
def step():
    torch.log_softmax(torch.full((1250, 8000), 1.0), dim=-1)
for _ in range(20):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
PAGES_OF_40_MB = 1250 * 8000 * 4 // 4096  # one block


def _faults_per_round(mode: str, env: dict | None = None) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ROUND, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0] == "True", float(out[1])


def test_kept_blocks_are_reused_without_page_faults():
    applied, faults = _faults_per_round("keep")
    assert applied
    assert faults < PAGES_OF_40_MB / 20


def test_glibc_defaults_fault_the_block_in_every_time():
    """What keep_large_blocks is for: without it, each step faults in both blocks' ~20,000 pages again."""
    applied, faults = _faults_per_round("default")
    assert not applied
    assert faults > PAGES_OF_40_MB / 2


def test_the_users_own_glibc_settings_are_left_alone():
    applied, faults = _faults_per_round("keep", {"MALLOC_MMAP_THRESHOLD_": str(16 * 1024 * 1024)})
    assert not applied
    assert faults > PAGES_OF_40_MB / 2  # the user's 16 MB threshold still maps 40 MB blocks afresh
