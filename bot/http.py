"""HTTP mode: Bolt's `/slack/events` behind Starlette (for replicas behind a load balancer), `/healthz` and
`/metrics` (Prometheus)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.services import KnowledgeService

MAX_BODY_BYTES = 1_000_000


def create_http_app(bolt_app: App, service: KnowledgeService) -> Starlette:
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return Response("payload too large", status_code=413)
        try:
            bolt_request = to_bolt_request(request, body)
        except ValueError:  # Bolt parses the body eagerly; a garbled payload is the sender's error
            return Response("malformed payload: expected Slack's form or JSON body", status_code=400)
        # Bolt's dispatch is synchronous: run it off the event loop so one slow ack blocks no other request.
        bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    async def healthz(_: Request) -> Response:
        def check_database() -> None:
            with service.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(check_database)
        except Exception as exc:  # health checks report, they do not raise
            return JSONResponse({"ok": False, "database": str(exc)[:200]}, status_code=503)
        return JSONResponse({"ok": True})

    async def metrics(_: Request) -> Response:
        payload = await run_in_threadpool(generate_latest, service.metrics.registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ])
