"""The benchmark suite: training, decoding, int8, the service, the peers and a roofline, side by side in one run.

    python -m bench --quick --json     # a few minutes; peers trained for a fixed small number of steps
    python -m bench                    # the record (~50 min): peers trained ~11 minutes, ours for the same wall time

Writes bench/results/bench-TIME.{json,md}, prints the table, and with --json prints one JSON object of the
headline figures as its last line. Ratios are ours / the faster peer, measured in this run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Optional

import torch

from bench import peers
from bench.common import MULTI30K, PEER_MATCH, RESULTS_DIR, run_measured
from bench.decoding import decode_in_worker, decoding_benchmark, find
from bench.report import markdown_report
from bench.service_throughput import service_benchmark
from bench.training import train_for, training_benchmark
from seq2seq.corpus import read_lines

DEFAULT_CONFIG = "configs/multi30k_de_en.yaml"


@dataclass
class Plan:
    train_steps: int  # of the default config, for its speed
    onmt_steps: int
    joey_steps: int
    peer_match_steps: int  # ours on the peers' model when the peers are not installed
    decode_lines: int
    decode_repeats: int
    service_sentences: int
    service_repeats: int
    side_by_side_rounds: int  # ours and the peers decoding the same test set in turn; odd, for a median round


QUICK = Plan(train_steps=150, onmt_steps=300, joey_steps=100, peer_match_steps=300, decode_lines=500, decode_repeats=3,
             service_sentences=200, service_repeats=1, side_by_side_rounds=3)
FULL = Plan(train_steps=900, onmt_steps=2100, joey_steps=1050, peer_match_steps=3000, decode_lines=1000,
            decode_repeats=3, service_sentences=500, service_repeats=3, side_by_side_rounds=5)


def our_training(plan: Plan, threads: int, peer_results: Optional[dict]) -> tuple[dict, dict]:
    """Speed of the default config, and ours on the peers' model for the faster peer's wall time (or fixed steps)."""
    default = training_benchmark(DEFAULT_CONFIG, plan.train_steps, threads)
    if peer_results:
        faster = max(peer_results["training"], key=lambda t: t["tgt_tokens_per_s"] or 0)
        minutes = faster["wall_s"] / 60  # the same wall-clock time as the faster peer, start-up included
        matched = train_for(PEER_MATCH, RESULTS_DIR / "train_peer_match", steps=10**6, windows=1, minutes=minutes,
                            extra=[f"train.valid_every={10**6}"])
    else:
        matched = train_for(PEER_MATCH, RESULTS_DIR / "train_peer_match", plan.peer_match_steps)
    return default, matched


def our_process_decoding(checkpoint: str, beam: int) -> dict:
    """`seq2seq translate` on test2016 as a whole process, as the peers are timed."""
    command = [sys.executable, "-m", "seq2seq", "translate", "--checkpoint", checkpoint, "--beam-size", str(beam),
               "--length-penalty", "1.0", "--input", str(MULTI30K / "test_2016_flickr.de.gz")]
    measured = run_measured(command, env={"OMP_NUM_THREADS": "2"})
    lines = len(measured.stdout.splitlines())
    return {"beam": beam, "process_s": round(measured.wall_s, 2),
            "process_sentences_per_s": round(lines / measured.wall_s, 1), "peak_mb": round(measured.peak_mb)}


def _median_run(runs: list[dict], rate) -> dict:
    """The run with the median rate (so its other fields, BLEU and memory, belong to it), with every round's rate."""
    ordered = sorted(runs, key=rate)
    return {**ordered[len(ordered) // 2], "rounds": [rate(r) for r in runs]}


def side_by_side_decoding(matched_ckpt: str, trained_peers: list[dict], rounds: int,
                          threads: int) -> tuple[dict, dict, list[dict]]:
    """Ours (fp32 and bf16) and each peer decode test2016, greedy and beam 5, one after another, `rounds` times over.

    The machine is shared and its speed drifts by tens of percent over minutes, so each toolkit is timed
    in every round and the median round of each is compared. Returns ours by beam in fp32 and in bf16,
    and the peers' runs.
    """
    ours: dict[tuple[Optional[str], int], list[dict]] = {(kind, beam): [] for kind in (None, "bf16") for beam in (1, 5)}
    theirs: dict[tuple[str, int], list[dict]] = {(t["toolkit"], beam): [] for t in trained_peers for beam in (1, 5)}
    for _ in range(rounds):
        for beam in (1, 5):
            for kind in (None, "bf16"):
                ours[(kind, beam)].append(decode_in_worker(matched_ckpt, "test2016", beam, lines=1000, repeats=1,
                                                           threads=threads, precision=kind))
            for trained in trained_peers:
                theirs[(trained["toolkit"], beam)].append(peers.decode_peer(trained, beam))
    peer_rate = lambda d: d["generation_sentences_per_s"] or d["process_sentences_per_s"]  # noqa: E731
    ours_rate = lambda d: d["sentences_per_s"]  # noqa: E731
    return ({str(beam): _median_run(ours[(None, beam)], ours_rate) for beam in (1, 5)},
            {str(beam): _median_run(ours[("bf16", beam)], ours_rate) for beam in (1, 5)},
            [_median_run(runs, peer_rate) for runs in theirs.values()])


def roofline_figures(checkpoint: str, threads: int) -> dict:
    """`bench.roofline` on a checkpoint, in a fresh process: how fast each job would be if only products cost time."""
    command = [sys.executable, "-m", "bench.roofline", "--checkpoint", checkpoint, "--threads", str(threads), "--json"]
    measured = run_measured(command, env={"OMP_NUM_THREADS": str(threads)})
    return json.loads(measured.stdout.strip().splitlines()[-1])


def headline(results: dict) -> dict:
    """The figures a script checks: ratios are ours / the faster peer, int8, bf16 and service against our own fp32."""
    runs = results["decoding"]["runs"]
    summary = {"train_fraction_of_peak": results["training"]["default"]["fraction_of_peak"]}
    fp32 = {b: find(runs, test_set="test2016", beam=b, precision=None) for b in (1, 5)}
    int8 = {b: find(runs, test_set="test2016", beam=b, precision="int8") for b in (1, 5)}
    summary["int8_speedup"] = round(int8[5]["sentences_per_s"] / fp32[5]["sentences_per_s"], 2)
    summary["int8_speedup_greedy"] = round(int8[1]["sentences_per_s"] / fp32[1]["sentences_per_s"], 2)
    summary["int8_bleu_delta"] = round(int8[5]["bleu"] - fp32[5]["bleu"], 2)
    bf16 = {b: find(runs, test_set="test2016", beam=b, precision="bf16") for b in (1, 5)}
    summary["bf16_speedup"] = round(bf16[5]["sentences_per_s"] / fp32[5]["sentences_per_s"], 2)
    summary["bf16_speedup_greedy"] = round(bf16[1]["sentences_per_s"] / fp32[1]["sentences_per_s"], 2)
    summary["bf16_bleu_delta"] = round(bf16[5]["bleu"] - fp32[5]["bleu"], 2)
    summary["bf16_bleu_delta_greedy"] = round(bf16[1]["bleu"] - fp32[1]["bleu"], 2)
    summary["service_vs_offline"] = results["service"]["clients"]["32"]["vs_offline"] if "service" in results else None
    roofline = results.get("roofline_peer_model")
    if roofline:  # how many times faster each job would be if only its matrix products cost time
        for x, job in zip(roofline["results"], ("train", "greedy", "beam5")):
            summary[f"{job}_products_only_headroom"] = round(x["headroom"], 2)
    peer = results.get("peers")
    if peer:
        best_train = max(t["tgt_tokens_per_s"] or 0 for t in peer["training"])
        summary["train_speedup_vs_peer"] = round(results["training"]["peer_match"]["tgt_tokens_per_s"] / best_train, 2)
        for beam, key in ((1, "greedy_speedup_vs_peer"), (5, "beam5_speedup_vs_peer")):
            best = max(d["generation_sentences_per_s"] or d["process_sentences_per_s"]
                       for d in peer["decoding"] if d["beam"] == beam)
            summary[key] = round(results["decoding_peer_model"][str(beam)]["sentences_per_s"] / best, 2)
            summary[key.replace("_speedup", "_bf16_speedup")] = round(
                results["decoding_peer_model_bf16"][str(beam)]["sentences_per_s"] / best, 2)
    else:
        summary.update(train_speedup_vs_peer=None, greedy_speedup_vs_peer=None, beam5_speedup_vs_peer=None,
                       greedy_bf16_speedup_vs_peer=None, beam5_bf16_speedup_vs_peer=None)
    return summary


def run_suite(plan: Plan, with_peers: bool, with_service: bool, checkpoint: Optional[str]) -> dict:
    threads = torch.get_num_threads()
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads, "torch": torch.__version__}
    if with_peers:
        results["peers"] = {"training": peers.train_peers(plan.onmt_steps, plan.joey_steps)}
    default, matched = our_training(plan, threads, results.get("peers"))
    results["training"] = {"default": default, "peer_match": matched}
    matched_ckpt = matched["checkpoint"]
    trained_peers = results["peers"]["training"] if with_peers else []
    results["decoding_peer_model"], results["decoding_peer_model_bf16"], peer_decoding = side_by_side_decoding(
        matched_ckpt, trained_peers, plan.side_by_side_rounds, threads)
    if with_peers:
        results["peers"]["decoding"] = peer_decoding
    results["process_decoding_peer_model"] = [our_process_decoding(matched_ckpt, beam) for beam in (1, 5)]
    results["roofline_peer_model"] = roofline_figures(matched_ckpt, threads)
    decode_ckpt = checkpoint or matched_ckpt
    results["decoding_checkpoint"] = decode_ckpt
    results["decoding"] = decoding_benchmark(decode_ckpt, lines=plan.decode_lines, repeats=plan.decode_repeats,
                                             threads=threads)
    if with_service:
        sentences = read_lines(MULTI30K / "test_2016_flickr.de.gz")[:plan.service_sentences]
        service = service_benchmark(decode_ckpt, sentences, [1, 8, 32], 5, plan.service_repeats)
        results["service"] = {**service, "clients": {str(k): v for k, v in service["clients"].items()}}
    results["headline"] = headline(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer steps, sentences and repeats")
    parser.add_argument("--json", action="store_true", help="print the headline figures as one JSON object, last")
    parser.add_argument("--checkpoint", help="a trained checkpoint for decoding, int8 and service figures "
                        "(default: ours trained on the peers' model in this run)")
    parser.add_argument("--no-peers", action="store_true", help="skip Joey NMT and OpenNMT-py")
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--onmt-steps", type=int, help="override the plan's OpenNMT-py training steps")
    parser.add_argument("--joey-steps", type=int, help="override the plan's Joey NMT training steps")
    args = parser.parse_args()
    with_peers = not args.no_peers and peers.available()
    if not args.no_peers and not with_peers:
        print(f"peers not installed in {peers.PEERS_DIR} (bench/peer_setup/setup.sh): their ratios will be null")
    plan = QUICK if args.quick else FULL
    plan = replace(plan, onmt_steps=args.onmt_steps or plan.onmt_steps, joey_steps=args.joey_steps or plan.joey_steps)
    results = run_suite(plan, with_peers, not args.no_service, args.checkpoint)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    table = markdown_report(results)
    stem.with_suffix(".md").write_text(table)
    print(table)
    print(f"written: {stem}.json, {stem}.md")
    if args.json:
        print(json.dumps(results["headline"]))


if __name__ == "__main__":
    main()
