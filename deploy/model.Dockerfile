# The service image with a checkpoint baked in, for deployments without a shared volume. Build it with
# the checkpoints folder as the context (so the project's .dockerignore, which keeps *.pt out, does not apply):
#   docker build -f deploy/model.Dockerfile --build-arg IMAGE=seq2seq-nmt -t seq2seq-nmt:de-en runs/x/checkpoints
ARG IMAGE=seq2seq-nmt:latest
FROM ${IMAGE}
COPY best.pt /models/best.pt
