#!/usr/bin/env bash
# Install Joey NMT 2.3.0 and OpenNMT-py 3.5.1 in their own virtual environments under $PEERS_DIR
# (default /tmp/peers) and prepare their data: SentencePiece unigram 8k per language, the same recipe
# as configs/peer_match.yaml. Idempotent: what exists is kept. Needs data/multi30k (make data).
set -euo pipefail
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$PEERS_DIR"
echo torch==2.13.0 > "$PEERS_DIR/constraint.txt"
if [ ! -x "$PEERS_DIR/venv_joey/bin/joeynmt" ] && [ ! -f "$PEERS_DIR/venv_joey/.done" ]; then
  python3 -m venv "$PEERS_DIR/venv_joey"
  "$PEERS_DIR/venv_joey/bin/pip" install -q torch==2.13.0
  "$PEERS_DIR/venv_joey/bin/pip" install -q -c "$PEERS_DIR/constraint.txt" joeynmt==2.3.0 sentencepiece sacrebleu importlib_metadata
  touch "$PEERS_DIR/venv_joey/.done"
fi
if [ ! -x "$PEERS_DIR/venv_onmt/bin/onmt_train" ]; then
  python3 -m venv "$PEERS_DIR/venv_onmt"
  "$PEERS_DIR/venv_onmt/bin/pip" install -q torch==2.13.0
  # OpenNMT-py 3.5.1 pins torch<2.3; its code runs on 2.13 with the workarounds in bench/peers.py.
  "$PEERS_DIR/venv_onmt/bin/pip" install -q --no-deps OpenNMT-py==3.5.1
  "$PEERS_DIR/venv_onmt/bin/pip" install -q -c "$PEERS_DIR/constraint.txt" configargparse pyyaml sacrebleu six \
      tensorboard sentencepiece numpy rapidfuzz pyahocorasick "pyonmttok<2,>=1.37" flask waitress spacy fasttext-wheel
fi
[ -f "$PEERS_DIR/data/sp/test.en" ] || "$PEERS_DIR/venv_joey/bin/python" "$HERE/prep.py" "$PEERS_DIR/data"
echo "peers ready in $PEERS_DIR"
