"""The benchmark suite measures real things: a decoding worker on a trained checkpoint, FLOP counts, the roofline."""
import json
import os
import subprocess
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.roofline import RecordProducts, product_flops, roofline
from bench.training import flops_per_target_token
from seq2seq.config import load_config
from seq2seq.model import build_model
from seq2seq.train import token_loss_sum
from tests.conftest import MULTI30K, REPO


def test_decoding_worker_measures_a_trained_checkpoint(tiny_run):
    command = [sys.executable, "-m", "bench.decoding", "--worker",
               "--checkpoint", str(tiny_run / "checkpoints/best.pt"), "--lines", "40", "--repeats", "1",
               "--beam", "2", "--threads", "1", "--precision", "int8"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "SEQ2SEQ_MULTI30K": str(MULTI30K)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sentences"] == 40 and report["precision"] == "int8" and report["beam"] == 2
    assert report["sentences_per_s"] > 0 and report["tgt_tokens_per_s"] > report["sentences_per_s"]
    assert report["peak_mb"] > 50 and 0 < report["bleu"] <= 100


def test_flop_count_covers_the_output_layer_and_grows_with_the_model():
    tiny, default = flops_per_target_token("configs/tiny.yaml"), flops_per_target_token("configs/multi30k_de_en.yaml")
    output_layer = 3 * 2 * 256 * 8000  # forward and backward of the default's 256 → 8,000 projection, per token
    assert 0 < tiny < default and output_layer < default < 4 * output_layer


def test_roofline_records_every_product_of_training_and_decoding_and_bounds_the_time_from_below():
    model = build_model(load_config("configs/tiny.yaml").model, 300, 300)
    src, tgt, src_lengths = torch.randint(4, 300, (16, 12)), torch.randint(4, 300, (16, 10)), torch.full((16,), 12)

    def training_step():
        token_loss_sum(model(src, src_lengths, tgt[:, :-1]), tgt[:, 1:]).backward()

    def encoding():
        with torch.inference_mode():  # the encoder's LSTM arrives as one operator here
            model.encode(src, src_lengths)

    for work in (training_step, encoding):
        with FlopCounterMode(display=False) as counter:
            work()
        with RecordProducts() as recorder:
            work()
        assert sum(n * product_flops(s) for s, n in recorder.calls.items()) == counter.get_total_flops() > 0
    result = roofline(training_step, units=16 * 9, label="tiny")
    assert 0 < result["products_alone_s"] < result["measured_s"]
    assert result["products_only_rate"] > result["measured_rate"] > 0


def test_workloads_train_and_translate_the_checkpoints_model_on_real_data(tiny_run, monkeypatch):
    import bench.workloads as workloads
    monkeypatch.setattr(workloads, "MULTI30K", MULTI30K)
    checkpoint = str(tiny_run / "checkpoints/best.pt")
    train, tokens = workloads.training_steps(checkpoint, batches=2)
    with RecordProducts() as recorder:
        train()
    assert tokens > 100 and sum(recorder.calls.values()) > 0
    translate, sentences = workloads.translating(checkpoint, lines=6, beam=2)
    assert sentences == 6 and len(translate()) == 6


def test_phases_time_every_part_of_a_real_training_step(tiny_run, monkeypatch):
    import bench.workloads as workloads
    from bench.phases import PHASES, time_phases
    monkeypatch.setattr(workloads, "MULTI30K", MULTI30K)
    result = time_phases(str(tiny_run / "checkpoints/best.pt"), batches=2, rounds=1, dtype=None)
    assert list(result["ms_per_batch"]) == list(PHASES) and all(ms > 0 for ms in result["ms_per_batch"].values())
    assert abs(sum(result["share"].values()) - 1) < 0.01 and result["tgt_tokens_per_s"] > 0


def test_side_by_side_reports_each_toolkits_median_round_whole():
    from bench.__main__ import _median_run
    runs = [{"sentences_per_s": 500.0, "bleu": 30.1}, {"sentences_per_s": 300.0, "bleu": 30.2},
            {"sentences_per_s": 400.0, "bleu": 30.3}]
    median = _median_run(runs, lambda d: d["sentences_per_s"])
    assert median == {"sentences_per_s": 400.0, "bleu": 30.3, "rounds": [500.0, 300.0, 400.0]}


def test_peak_memory_is_the_commands_own_not_that_of_the_process_running_it(tmp_path, monkeypatch):
    """Linux starts a child's ru_maxrss from its parent's memory; bench processes hold torch and more."""
    from bench.common import run_measured
    monkeypatch.chdir(tmp_path)  # run_measured keeps its logs under bench/results
    held = bytearray(400 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # resident, not just reserved
    small = run_measured([sys.executable, "-c", "pass"])
    big = run_measured([sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'1' * len(b[::4096])"])
    assert small.peak_mb < 100
    assert 200 < big.peak_mb < 300


def test_cells_and_fused_benchmarks_measure_every_cell_and_both_paths(tiny_run, monkeypatch):
    import bench.workloads as workloads
    from bench.cells import compare
    from bench.fused import training
    monkeypatch.setattr(workloads, "MULTI30K", MULTI30K)
    checkpoint = str(tiny_run / "checkpoints/best.pt")
    cells = compare(checkpoint, ["lstm", "sru", "qrnn"], None, rounds=1)
    assert list(cells) == ["lstm", "sru", "qrnn"] and cells["lstm"]["step_speed_vs_lstm"] == 1.0
    baseline = cells["lstm"]["step_tgt_tokens_per_s"]  # each cell's ratio is against the LSTM of the same run
    assert all(r["step_speed_vs_lstm"] == round(r["step_tgt_tokens_per_s"] / baseline, 3) for r in cells.values())
    paths = training(checkpoint, None, rounds=1)
    assert list(paths) == ["decoder loop forward+backward", "output layer and loss forward+backward", "training step"]
    assert all({"fused_s", "eager_s", "speedup"} <= set(paths[part]) for part in paths)
    assert {"fused_tgt_tokens_per_s", "eager_tgt_tokens_per_s"} <= set(paths["training step"])
