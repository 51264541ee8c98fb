# `make run`: set up, fetch data, train the quick-start model if none exists, translate examples.
# `make test`: set up and run the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := ../shared/data/multi30k
CKPT := runs/quickstart/checkpoints/best.pt

$(BIN)/seq2seq: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0   # the CPU build first, so nothing pulls CUDA packages
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/seq2seq

data/multi30k/train.de.gz: | setup
	if [ -d $(SHARED_DATA) ]; then $(BIN)/seq2seq data multi30k --local $(SHARED_DATA); \
	else $(BIN)/seq2seq data multi30k; fi

$(CKPT): | data/multi30k/train.de.gz
	$(BIN)/seq2seq train configs/quickstart.yaml

run: $(CKPT)
	printf 'Ein Hund läuft über eine Wiese.\nZwei Männer spielen Fußball im Park.\nEine Frau liest ein Buch.\n' \
	  | $(BIN)/seq2seq translate --checkpoint $(CKPT)

test: setup
	$(BIN)/python -m pytest -q

.PHONY: setup run test
