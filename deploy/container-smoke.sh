#!/usr/bin/env bash
# Proves the image: builds it, starts it with a run's checkpoints folder mounted read-only at /models
# (and a read-only root filesystem, as in deploy/k8s), then checks over HTTP that it translates through
# both APIs, that it runs as the non-root user with its HEALTHCHECK, and that SIGTERM stops it cleanly.
#
#   deploy/container-smoke.sh CHECKPOINTS_DIR [IMAGE_TAG]      (as root; `make container-smoke` trains one)
#
# Building and starting use ../shared/container/build-and-smoke.sh (podman + a locally built Debian base,
# for machines with no Docker engine and no registry; see its README). CONTEXT (default .) is the build
# context; TORCH_INDEX_URL (default empty: pip's own configuration, which the recipe lends to the build
# and which holds the CPU wheel here) is passed to the Dockerfile.
set -euo pipefail

die() { echo "container-smoke: FAIL: $*" >&2; exit 1; }
[[ $# -ge 1 && -d $1 ]] || die "usage: $0 CHECKPOINTS_DIR [IMAGE_TAG]"
CKPT_DIR=$(realpath "$1")
TAG=${2:-localhost/seq2seq-nmt:smoke}
CONTEXT=${CONTEXT:-.}
RECIPE=${BUILD_AND_SMOKE:-$(realpath "$(dirname "$0")/../..")/shared/container/build-and-smoke.sh}
[[ -x $RECIPE ]] || die "build recipe not found: $RECIPE (set BUILD_AND_SMOKE)"
PODMAN=(podman --runtime "${CONTAINER_RUNTIME:-runc}")

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
LOG=$(mktemp)
NAME=""
cleanup() { [[ -z $NAME ]] || "${PODMAN[@]}" rm -f -t 5 "$NAME" >/dev/null 2>&1 || true; rm -f "$LOG"; }
trap cleanup EXIT

# Build, start, and wait for /ready (the models are loaded). --keep leaves the container to us, on
# failure too, so take its name from the "starting" line and let cleanup remove it either way.
start=$(date +%s.%N)
recipe=0
"$RECIPE" --keep --host-port "$PORT" --build-arg "TORCH_INDEX_URL=${TORCH_INDEX_URL:-}" \
  --run-arg=--read-only --run-arg=-v --run-arg="$CKPT_DIR:/models:ro" \
  "$CONTEXT" "$TAG" 8000 /ready 2>&1 | tee "$LOG" || recipe=$?
NAME=$(sed -n 's/.*: starting .* as \(smoke-[^ ]*\) (.*/\1/p' "$LOG")
((recipe == 0)) || die "build or start failed (see above)"
[[ -n $NAME ]] || die "the recipe did not report a running container"
echo "container-smoke: build + start + ready: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"

# A real translation through each API: non-empty text from the mounted model.
native=$(curl -sf "$URL/v1/translate" -H 'content-type: application/json' \
  -d '{"text": ["Ein Hund läuft über eine Wiese.", "Zwei Männer spielen Fußball."], "beam_size": 5}') \
  || die "POST /v1/translate failed"
python3 -c 'import json, sys; r = json.loads(sys.argv[1]); t = [x["text"] for x in r["translations"]]
assert len(t) == 2 and all(s.strip() for s in t), r
print("container-smoke: POST /v1/translate (%s): %s" % (r["model"], t))' "$native" || die "bad answer: $native"
libre=$(curl -sf "$URL/translate" --data-urlencode 'q=Eine Frau liest ein Buch.' -d source=auto -d target=en) \
  || die "POST /translate failed"
python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["translatedText"].strip(), r
print("container-smoke: POST /translate (LibreTranslate): %r" % r["translatedText"])' "$libre" || die "bad answer: $libre"

# HTML and a file: the markup comes back, and a .txt goes through /translate_file and /download_file (the
# file store lives in /tmp, writable under the read-only root filesystem).
html=$(curl -sf "$URL/translate" -H 'content-type: application/json' \
  -d '{"q": ["<p>Ein <b>Hund</b> läuft. <a href=\"https://x.org\">https://x.org</a></p>"], "source": "auto", "target": "en", "format": "html"}') \
  || die "POST /translate format=html failed"
python3 -c 'import json, sys; t = json.loads(sys.argv[1])["translatedText"][0]
assert t.startswith("<p>") and "<b>" in t and "<a href=\"https://x.org\">https://x.org</a></p>" in t, t
print("container-smoke: POST /translate (HTML): %r" % t)' "$html" || die "bad HTML answer: $html"
printf 'Ein Hund läuft.\nZwei Männer spielen.\n' >"$LOG.txt"
file_url=$(curl -sf "$URL/translate_file" -F "file=@$LOG.txt;filename=notiz.txt" -F source=de -F target=en \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["translatedFileUrl"])') || die "POST /translate_file failed"
rm -f "$LOG.txt"
[[ $(curl -sf "$file_url" | wc -l) == 2 ]] || die "the translated file at $file_url is not two lines"
echo "container-smoke: POST /translate_file + GET $file_url"

# The page: a non-Python file, present only if the package declares it.
curl -sf "$URL/" | grep -qi "<html" || die "GET / does not serve the page"
echo "container-smoke: GET / serves the page"

# The image's own contract.
uid=$("${PODMAN[@]}" exec "$NAME" id -u)
[[ $uid != 0 ]] || die "the server runs as root"
echo "container-smoke: runs as uid $uid"
"${PODMAN[@]}" image inspect -f '{{.Config.Healthcheck.Test}}' "$TAG" | grep -q /health || die "no HEALTHCHECK on /health"
"${PODMAN[@]}" healthcheck run "$NAME" >/dev/null || die "the image's HEALTHCHECK failed"
echo "container-smoke: HEALTHCHECK passes"

# SIGTERM (podman stop) with a request in flight: the request completes and the server exits by
# itself, well before podman's 30 s escalation to SIGKILL (exit code 137).
curl -s -o /dev/null -w '%{http_code}' "$URL/v1/translate" -H 'content-type: application/json' \
  -d "{\"text\": [$(printf '"Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",%.0s' {1..63})\"Ende.\"], \"beam_size\": 10}" \
  >"$LOG.inflight" &
sleep 0.3
t=$(date +%s.%N)
"${PODMAN[@]}" stop -t 30 "$NAME" >/dev/null
stopped=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
wait
code=$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$NAME")
inflight=$(cat "$LOG.inflight"); rm -f "$LOG.inflight"
"${PODMAN[@]}" logs "$NAME" 2>&1 | grep -q "Finished server process" || die "no clean uvicorn shutdown in the logs"
[[ $code == 0 || $code == 143 ]] || die "exit code $code after SIGTERM"
echo "container-smoke: SIGTERM: stopped in $stopped s, exit code $code, in-flight request answered $inflight"
[[ $inflight == 200 ]] || die "the in-flight request got $inflight"
echo "container-smoke: PASS $TAG ($("${PODMAN[@]}" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
