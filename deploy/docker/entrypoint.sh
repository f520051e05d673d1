#!/bin/sh
# Entrypoint of the kb-bot image. The image runs `kb serve` in HTTP mode (Slack request URL, /healthz, /metrics
# on --port). `kb serve` picks its mode from the environment, so refuse the two settings that would silently
# turn this container into something its health checks and Service cannot serve:
#   - SLACK_APP_TOKEN set: Socket Mode (no HTTP server, so /healthz never answers and the probes fail);
#   - no SLACK_SIGNING_SECRET: the local console, which reads the terminal.
# Other commands (`kb reindex`, `kb doctor --repair`, `kb sync`, ...) run as given.
set -eu

if [ "${1:-}" = "kb" ] && [ "${2:-}" = "serve" ]; then
  if [ -n "${SLACK_APP_TOKEN:-}${KB_SLACK_APP_TOKEN:-}" ]; then
    echo "kb-bot: SLACK_APP_TOKEN is set, so kb serve would run in Socket Mode; this image serves HTTP mode." >&2
    echo "kb-bot: unset SLACK_APP_TOKEN (HTTP mode uses SLACK_SIGNING_SECRET), or run Socket Mode with" >&2
    echo "kb-bot: --entrypoint kb and without the HTTP health check (see docs/deploy.md)." >&2
    exit 64
  fi
  if [ -z "${SLACK_SIGNING_SECRET:-}${KB_SLACK_SIGNING_SECRET:-}" ]; then
    echo "kb-bot: SLACK_SIGNING_SECRET is not set; HTTP mode needs it (and SLACK_BOT_TOKEN). See docs/deploy.md." >&2
    exit 64
  fi
  if [ -z "${SLACK_BOT_TOKEN:-}${KB_SLACK_BOT_TOKEN:-}" ]; then
    echo "kb-bot: SLACK_BOT_TOKEN is not set; the bot cannot post without it. See docs/deploy.md." >&2
    exit 64
  fi
fi
exec "$@"
