"""The suite's results as Markdown tables, in the order BENCHMARKS.md presents them."""
from __future__ import annotations


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(r: dict) -> str:
    parts = [f"# Benchmark run {r['started']} (torch {r['torch']}, {r['threads']} threads)"]
    t = r["training"]
    d = t["default"]
    parts.append("## Training\n" + _table(
        ["model", "steps", "tgt tok/s", "src+tgt tok/s", "peak MB", "GFLOP/tgt tok", "GFLOP/s", "products in",
         "matmul peak", "fraction", "fp32 peak", "fraction of fp32 peak"],
        [[d["config"], d["steps"], d["tgt_tokens_per_s"], d["src_tgt_tokens_per_s"], d["peak_mb"],
          d["gflops_per_tgt_token"], d["achieved_gflops"], d.get("products_dtype", "fp32"), d["matmul_peak_gflops"],
          d["fraction_of_peak"],
          d.get("fp32_matmul_peak_gflops"), d.get("fraction_of_fp32_peak")]]))
    peer = r.get("peers")
    m = t["peer_match"]
    rows = [["ours (configs/peer_match.yaml)", m["steps"], m["wall_s"], m["tgt_tokens_per_s"], m["peak_mb"],
             m["valid_bleu_greedy"]]]
    if peer:
        rows += [[p["toolkit"], p["steps"], p["wall_s"], p["tgt_tokens_per_s"], p["peak_mb"], None]
                 for p in peer["training"]]
    parts.append("## Same model as the peers: training\n" + _table(
        ["toolkit", "steps", "wall s", "tgt tok/s (own log)", "peak MB", "val BLEU greedy"], rows))
    rounds = lambda x: " / ".join(str(v) for v in x.get("rounds", []))  # noqa: E731
    rows = [["ours", beam, x["sentences"], x["sentences_per_s"], rounds(x), proc["process_sentences_per_s"],
             x["tgt_tokens_per_s"], x["peak_mb"], x["bleu"]]
            for (beam, x), proc in zip(sorted(r["decoding_peer_model"].items()), r["process_decoding_peer_model"])]
    rows += [["ours, --precision bf16", beam, x["sentences"], x["sentences_per_s"], rounds(x), None,
              x["tgt_tokens_per_s"], x["peak_mb"], x["bleu"]]
             for beam, x in sorted(r.get("decoding_peer_model_bf16", {}).items())]
    if peer:
        rows += [[p["toolkit"], p["beam"], p["sentences"], p["generation_sentences_per_s"], rounds(p),
                  p["process_sentences_per_s"], p["generation_tgt_tokens_per_s"], p["peak_mb"], p["bleu"]]
                 for p in peer["decoding"]]
    title = "## Same model as the peers: decoding test2016 (1,000 sentences, median round; toolkits in turn)\n"
    parts.append(title + _table(
        ["toolkit", "beam", "sentences", "sent/s (generation)", "each round", "sent/s (whole process)", "tgt tok/s",
         "peak MB", "BLEU"], rows))
    if "roofline_peer_model" in r:
        roof = r["roofline_peer_model"]
        parts.append(f"## Roofline: the same model if only its matrix products cost time (`bench.roofline`; "
                     f"matmul ceiling {roof['matmul_ceiling_gflops']:.1f} GFLOP/s)\n" + _table(
                         ["work", "rate measured", "products only", "headroom", "products' GFLOP/s alone",
                          "achieved GFLOP/s"],
                         [[x["work"], round(x["measured_rate"]), round(x["products_only_rate"]),
                           round(x["headroom"], 2), round(x["products_gflops_alone"], 1),
                           round(x["achieved_gflops"], 1)] for x in roof["results"]]))
    dec = r["decoding"]
    parts.append(f"## Decoding ({r['decoding_checkpoint']})\n" + _table(
        ["test set", "beam", "precision", "sentences", "sent/s", "tgt tok/s", "ms/sentence", "peak MB", "BLEU"],
        [[x["test_set"], x["beam"], x["precision"] or "fp32", x["sentences"], x["sentences_per_s"],
          x["tgt_tokens_per_s"], x["ms_per_sentence"], x["peak_mb"], x["bleu"]] for x in dec["runs"]]))
    if "by_length" in dec:
        parts.append("### Time against source length (IWSLT14 test, length quartiles)\n" + _table(
            ["beam", "mean source pieces", "ms/sentence", "tgt tok/s"],
            [[x["beam"], x["mean_source_pieces"], x["ms_per_sentence"], x["tgt_tokens_per_s"]]
             for x in dec["by_length"]]))
        parts.append("### Time against batch size (test2016, beam 5)\n" + _table(
            ["source tokens per batch", "sent/s", "ms/sentence", "peak MB"],
            [[x["batch_tokens"] // x["beam"], x["sentences_per_s"], x["ms_per_sentence"], x["peak_mb"]]
             for x in dec["by_batch"]]))
    if "service" in r:
        s = r["service"]
        parts.append(f"## Service (beam 5, {s['sentences']} sentences; offline {s['offline_sentences_per_s']} sent/s, "
                     f"server peak {s['server_peak_mb']} MB)\n" + _table(
                         ["clients", "sent/s", "vs offline", "p50 ms", "p95 ms", "p99 ms"],
                         [[c, x["sentences_per_s"], x["vs_offline"], x["p50_ms"], x["p95_ms"], x["p99_ms"]]
                          for c, x in s["clients"].items()]))
    parts.append("## Headline\n" + _table(["figure", "value"], [[k, v] for k, v in r["headline"].items()]))
    return "\n\n".join(parts) + "\n"
