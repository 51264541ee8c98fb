# `make run`: set up, fetch data, train the quick-start model if none exists, then serve it on :8000.
# `make test`: set up (Chromium included, for the page test), lint (ruff), type-check (mypy), run the test suite.
# `make container-smoke`: build the image and prove it translates (podman, root; minutes, so not in CI).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := ../shared/data/multi30k
CKPT := runs/quickstart/checkpoints/best.pt
HOST ?= 127.0.0.1
PORT ?= 8000

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
	printf 'Ein Hund läuft über eine Wiese.\nZwei Männer spielen Fußball im Park.\n' \
	  | $(BIN)/seq2seq translate --checkpoint $(CKPT)
	$(BIN)/seq2seq serve --checkpoint $(CKPT) --host $(HOST) --port $(PORT)

# Debian's Chromium and its driver, for the test that drives the page in a real headless browser.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromedriver >/dev/null || { $(SUDO) apt-get update -q >/dev/null && \
	  $(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "could not install chromium: the browser test will be skipped"

# The npm LibreTranslate client, for its conformance test (skipped where node is missing).
node-clients:
	@command -v npm >/dev/null && npm install -q --no-audit --no-fund --prefix .node-clients libretranslate@1.0.1 \
	  >/dev/null 2>&1 || echo "could not install the npm client: its test will be skipped"

test: setup browser node-clients
	$(BIN)/ruff check seq2seq service bench tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The image, started with a real run's checkpoints folder (best.pt, last.pt, step_*.pt) mounted at /models.
TINY_CKPT := runs/tiny/checkpoints/best.pt
$(TINY_CKPT): | data/multi30k/train.de.gz
	$(BIN)/seq2seq train configs/tiny.yaml

container-smoke: $(TINY_CKPT)
	$(SUDO) deploy/container-smoke.sh runs/tiny/checkpoints

.PHONY: setup run test browser node-clients container-smoke
