"""The `kb` command line: the same service layer the Slack handlers call."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from bot import logs, render
from bot.config import Settings
from bot.heap import freeze_loaded_objects
from bot.services import KnowledgeService
from bot.wiring import build_service
from store.errors import KbError
from store.lifecycle import Draft
from store.models import EntryStatus, ProposalKind, ProposalStatus

if TYPE_CHECKING:
    from bot.search_workers import SearchWorkers

F = TypeVar("F", bound=Callable[..., Any])


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str))


@contextmanager
def _service(ctx: click.Context) -> Iterator[KnowledgeService]:
    settings: Settings = ctx.obj["settings"]
    service = build_service(settings)
    try:
        yield service
    finally:
        service.close()


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """kb: a knowledge base of human-approved runbooks, answered with citations."""
    try:
        ctx.obj = {"settings": Settings()}
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper()
        raise KbError(f"bad configuration: KB_{where}: {first['msg']}") from exc


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--approved-by", metavar="USER", help="Import as approved entries, approved by USER.")
@json_option
@click.pass_context
def import_(ctx: click.Context, paths: tuple[Path, ...], approved_by: str | None, as_json: bool) -> None:
    """Import markdown files/folders or JSONL ({"id","title","text",...}); pending proposals by default."""
    with _service(ctx) as service:
        report = service.import_paths(list(paths), approved_by=approved_by)
    data = {"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
            "proposed": report.proposed, "failed": report.failed,
            "indexed": report.sync.applied if report.sync else 0, "vectorized": report.vectorized,
            "index_errors": report.sync.errors if report.sync else [],
            "keyword_ready_seconds": report.keyword_ready_seconds, "hybrid_ready_seconds": report.hybrid_ready_seconds}
    if as_json:
        _json_out(data)
    else:
        click.echo(render.import_report(data))
    if report.failed and not (report.created or report.updated or report.proposed or report.unchanged):
        ctx.exit(1)


@cli.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many entries to return.")
@json_option
@click.pass_context
def search(ctx: click.Context, query: str, k: int, as_json: bool) -> None:
    """Hybrid search over approved entries. QUERY '-' reads one query a line from stdin (JSON lines out)."""
    with _service(ctx) as service:
        if query == "-":
            for line in sys.stdin:
                if line.strip():
                    hits = service.search(line.strip(), k=k)
                    _json_out({"query": line.strip(), "hits": [h.as_json() for h in hits]})
                    sys.stdout.flush()
            return
        hits = service.search(query, k=k)
    if as_json:
        _json_out({"query": query, "hits": [h.as_json() for h in hits]})
    else:
        click.echo(render.hits(hits))


@cli.command()
@click.argument("question")
@click.option("--as", "actor", default=lambda: os.environ.get("USER", "cli"), help="Who is asking.")
@json_option
@click.pass_context
def ask(ctx: click.Context, question: str, actor: str, as_json: bool) -> None:
    """Answer from approved entries with citations, or say "I don't know"."""
    with _service(ctx) as service:
        answer, task_id = service.ask(question, actor=actor)
    if as_json:
        _json_out({**answer.as_json(), "task_id": task_id})
    else:
        click.echo(render.answer(answer, task_id))


def _read_text(text: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise KbError(f"cannot read {file}: {exc.strerror}") from exc
    if text is not None:
        return text
    if not sys.stdin.isatty():
        return sys.stdin.read()
    raise KbError("give the text as an argument, with --file, or on standard input")


def _draft(title: str | None, body: str, tags: str, note: str = "") -> Draft:
    body = body.strip()
    if title is None:
        first, _, rest = body.partition("\n")
        title = first.lstrip("# ").strip()
        body = rest.strip() or body
    return Draft(title=title, body=body, tags=[t for t in tags.split(",") if t.strip()], change_note=note)


@cli.command()
@click.argument("text", required=False)
@click.option("--title", help="Title; by default the first line of the text.")
@click.option("--file", type=click.Path(path_type=Path), help="Read the body from a markdown file.")
@click.option("--tags", default="", help="Comma-separated tags.")
@click.option("--entry", "entry_id", type=int, help="Propose an update of this entry instead of a new one.")
@click.option("--by", "proposer", default=lambda: os.environ.get("USER", "cli"), help="Proposer.")
@json_option
@click.pass_context
def propose(ctx: click.Context, text: str | None, title: str | None, file: Path | None, tags: str,
            entry_id: int | None, proposer: str, as_json: bool) -> None:
    """Propose a new entry (or, with --entry, an update). It waits for an approver."""
    draft = _draft(title, _read_text(text, file), tags)
    kind = ProposalKind.UPDATE if entry_id else ProposalKind.NEW
    with _service(ctx) as service:
        proposal = service.propose(draft, proposer=proposer, kind=kind, entry_id=entry_id)
    if as_json:
        _json_out(render.proposal_json(proposal))
    else:
        click.echo(f"Proposal #{proposal.id} submitted ({proposal.kind.value}); it waits for an approver.")
        for note in [*proposal.review_notes, *proposal.review.get("notes", [])]:
            click.echo(note)


@cli.command()
@click.argument("proposal_id", type=int)
@json_option
@click.pass_context
def review(ctx: click.Context, proposal_id: int, as_json: bool) -> None:
    """Run the Reviewer on a pending proposal again: near-duplicates, contradictions, risky or stale content."""
    with _service(ctx) as service:
        found = service.review_proposal(proposal_id)
    _json_out(found.as_json()) if as_json else click.echo("\n".join(found.notes()))


@cli.command()
@click.argument("proposal_id", type=int)
@click.option("--title")
@click.option("--text")
@click.option("--file", type=click.Path(path_type=Path))
@click.option("--tags", default="")
@click.option("--rebase", is_flag=True, help="Move an update proposal onto the entry's current version.")
@click.option("--by", "editor", required=True)
@click.pass_context
def edit(ctx: click.Context, proposal_id: int, title: str | None, text: str | None, file: Path | None,
         tags: str, rebase: bool, editor: str) -> None:
    """Edit a pending proposal; the previous draft is kept as a revision."""
    with _service(ctx) as service:
        current = service.show_proposal(proposal_id).proposal
        body = _read_text(text, file) if (text or file) else current.body
        draft = Draft(title=title or current.title, body=body,
                      tags=[t for t in tags.split(",") if t] or current.tags)
        proposal = service.edit(proposal_id, draft, by=editor, rebase=rebase)
    click.echo(f"Proposal #{proposal.id} is now at revision {proposal.revision}.")


@cli.command()
@click.argument("proposal_id", type=int)
@click.option("--by", "approver", required=True, help="The approver (not the proposer).")
@json_option
@click.pass_context
def approve(ctx: click.Context, proposal_id: int, approver: str, as_json: bool) -> None:
    """Approve a pending proposal: it becomes an entry version and is indexed."""
    with _service(ctx) as service:
        decided = service.approve(proposal_id, by=approver)
    data = render.decided_json(decided)
    if as_json:
        _json_out(data)
    else:
        click.echo(render.decided(data))


@cli.command()
@click.argument("proposal_id", type=int)
@click.option("--by", "approver", required=True)
@click.option("--reason", required=True, help="Why, so that the proposer can fix it.")
@json_option
@click.pass_context
def reject(ctx: click.Context, proposal_id: int, approver: str, reason: str, as_json: bool) -> None:
    """Reject a pending proposal with a reason."""
    with _service(ctx) as service:
        decision = service.reject(proposal_id, by=approver, reason=reason)
    if as_json:
        _json_out({"proposal_id": proposal_id, "status": "rejected", "by": decision.decided_by,
                   "reason": decision.reason})
    else:
        click.echo(f"Proposal #{proposal_id} rejected by {decision.decided_by}: {decision.reason}")


@cli.command()
@click.argument("entry_id", type=int)
@click.option("--by", "proposer", required=True)
@click.option("--reason", required=True)
@click.pass_context
def deprecate(ctx: click.Context, entry_id: int, proposer: str, reason: str) -> None:
    """Propose deprecating an entry; once approved it leaves the index."""
    with _service(ctx) as service:
        current = service.show_entry(entry_id).entry
        draft = Draft(title=current.title, body=reason, change_note=reason)
        proposal = service.propose(draft, proposer=proposer, kind=ProposalKind.DEPRECATE, entry_id=entry_id)
    click.echo(f"Proposal #{proposal.id} to deprecate entry #{entry_id} submitted; it waits for an approver.")


@cli.command("list")
@click.option("--proposals", is_flag=True, help="List proposals instead of entries.")
@click.option("--status", help="Entries: active|deprecated|all. Proposals: pending|approved|rejected|withdrawn|all.")
@json_option
@click.pass_context
def list_(ctx: click.Context, proposals: bool, status: str | None, as_json: bool) -> None:
    """List entries (default) or proposals."""
    with _service(ctx) as service:
        if proposals:
            wanted = _status(ProposalStatus, status or "pending")
            rows = [render.proposal_json(p) for p in service.list_proposals(status=wanted)]
        else:
            rows = [render.entry_json(e) for e in service.list_entries(status=_status(EntryStatus, status or "active"))]
    if as_json:
        _json_out(rows)
    else:
        click.echo(render.table(rows) if rows else "Nothing here.")


def _status(enum: Any, value: str) -> Any:
    if value == "all":
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = "|".join([m.value for m in enum] + ["all"])
        raise KbError(f"--status must be one of {allowed}") from None


@cli.command()
@click.argument("item_id", type=int)
@click.option("--proposal", is_flag=True, help="Show a proposal instead of an entry.")
@json_option
@click.pass_context
def show(ctx: click.Context, item_id: int, proposal: bool, as_json: bool) -> None:
    """Show an entry with its history (or, with --proposal, a proposal)."""
    with _service(ctx) as service:
        data = (render.proposal_detail_json(service.show_proposal(item_id)) if proposal
                else render.entry_detail_json(service.show_entry(item_id)))
    if as_json:
        _json_out(data)
    else:
        click.echo(render.detail(data))


@cli.command()
@json_option
@click.pass_context
def reindex(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the search index from the SQL store alone."""
    with _service(ctx) as service:
        chunks = service.reindex()
        entries = len(service.list_entries(limit=10**9))
    if as_json:
        _json_out({"entries": entries, "chunks": chunks})
    else:
        click.echo(f"Index rebuilt: {entries} entries, {chunks} chunks.")


@cli.command()
@click.option("--repair", is_flag=True, help="Fix what is found.")
@json_option
@click.pass_context
def doctor(ctx: click.Context, repair: bool, as_json: bool) -> None:
    """Report drift between the SQL store and the index. Exits 1 when drift is left unrepaired."""
    with _service(ctx) as service:
        report = service.doctor(repair=repair)
        pending = len(service.pending_outbox())
    data = {**report.as_dict(), "outbox_pending": pending}
    if as_json:
        _json_out(data)
    else:
        click.echo(render.drift(data))
    if not report.clean and not report.repaired:
        ctx.exit(1)


@cli.command()
@json_option
@click.pass_context
def sync(ctx: click.Context, as_json: bool) -> None:
    """Apply pending index changes from the outbox."""
    with _service(ctx) as service:
        report = service.sync_outbox()
    data = {"applied": report.applied, "failed": report.failed, "errors": report.errors}
    _json_out(data) if as_json else click.echo(f"Applied {report.applied}, failed {report.failed}.")


@cli.command()
@click.argument("task_id")
@json_option
@click.pass_context
def trace(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show a task: its plan, steps, timings and result."""
    with _service(ctx) as service:
        data = render.task_json(service.trace(task_id))
    _json_out(data) if as_json else click.echo(render.detail(data))


@cli.command()
@json_option
@click.pass_context
def gaps(ctx: click.Context, as_json: bool) -> None:
    """Questions the bot could not answer from approved entries (knowledge gaps), newest first."""
    with _service(ctx) as service:
        rows = [{"task_id": t.id, "question": t.input, "asked_by": t.actor, "at": t.started_at.isoformat()}
                for t in service.knowledge_gaps()]
    if as_json:
        _json_out(rows)
    else:
        click.echo("\n".join(f"{r['at'][:16]}  {r['asked_by']}: {r['question']}" for r in rows) or "No gaps.")


@cli.command("review-interval")
@click.argument("entry_id", type=int)
@click.argument("days", type=int, required=False)
@click.option("--by", "actor", default=lambda: os.environ.get("USER", "cli"), help="Who sets it.")
@click.pass_context
def review_interval(ctx: click.Context, entry_id: int, days: int | None, actor: str) -> None:
    """Set an entry's own re-verification interval in days (none: back to its tags' interval or the default)."""
    with _service(ctx) as service:
        entry = service.set_review_interval(entry_id, days, by=actor)
    when = entry.review_after.strftime("%Y-%m-%d") if entry.review_after else "never"
    click.echo(f"Entry #{entry.id}: reviewed every {days or 'default'} days; next review {when}.")


@cli.command()
@click.argument("name", type=click.Choice(["outbox_sync", "reconcile", "verification", "approval_reminders",
                                           "gaps_digest"]))
@click.pass_context
def job(ctx: click.Context, name: str) -> None:
    """Run one scheduled job now (as the elected scheduler would); its messages go to Slack if a token is set."""
    settings: Settings = ctx.obj["settings"]
    from bot.notify import NoNotifier, Notifier
    from bot.scheduler import KbScheduler

    with _service(ctx) as service:
        notifier: Notifier = NoNotifier()
        if settings.slack_bot_token is not None:
            from bot.app import web_client
            from handlers.notify import SlackNotifier

            notifier = SlackNotifier(web_client(settings), settings)
        ok = KbScheduler(service, notifier, holder="cli").run(name)
    if not ok:
        raise KbError(f"job {name} failed; see the log (KB_LOG_LEVEL=INFO) and `kb trace`")
    click.echo(f"job {name} done")


@cli.command()
@click.option("--port", default=3000, show_default=True, help="HTTP mode: the port for /slack/events and /healthz.")
@click.option("--host", default="0.0.0.0", show_default=True, help="HTTP mode: the address to listen on.")
@click.option("--as", "actor", default=lambda: os.environ.get("USER", "you"), help="Console: who you are.")
@click.pass_context
def serve(ctx: click.Context, port: int, host: str, actor: str) -> None:
    """Run the bot: Socket Mode with SLACK_APP_TOKEN, HTTP mode with SLACK_SIGNING_SECRET, else a local console."""
    settings: Settings = ctx.obj["settings"]
    from bot.telemetry import init_sentry

    init_sentry(settings)
    with _service(ctx) as service:
        if settings.slack_app_token is None and settings.slack_signing_secret is None:
            from bot.console import Console

            logs.configure(settings.log_format, path=settings.data_dir / "kb.log")  # the terminal is for talking
            Console(settings, service, user=actor, stdin=sys.stdin, stdout=sys.stdout).run()
            return
        from bot.app import create_app, start_scheduler

        logs.configure(settings.log_format, level=os.environ.get("KB_LOG_LEVEL", "INFO"))
        _exit_cleanly_on_sigterm()
        bolt_app = create_app(settings, service)
        scheduler = start_scheduler(settings, service, bolt_app)
        service.search_workers = _start_search_workers(settings, service)
        freeze_loaded_objects()  # after the index connection and the imports the first requests would make
        try:
            if settings.slack_app_token is not None:
                from slack_bolt.adapter.socket_mode import SocketModeHandler

                from bot.metrics import serve_metrics

                serve_metrics(service.metrics, settings.metrics_port)
                SocketModeHandler(bolt_app, settings.slack_app_token.get_secret_value()).start()  # type: ignore[no-untyped-call]
                return
            import uvicorn

            from bot.http import create_http_app

            uvicorn.run(create_http_app(bolt_app, service), host=host, port=port, log_level="warning")
        finally:
            if scheduler is not None:
                scheduler.stop()
            if service.search_workers is not None:
                service.search_workers.close()


def _start_search_workers(settings: Settings, service: KnowledgeService) -> SearchWorkers | None:
    """Worker processes for searches (see bot/search_workers.py), warmed up in the background. An embedded
    server is started here first: the workers share it and never start one."""
    if settings.search_processes == 0:
        return None
    from bot.search_workers import SearchWorkers

    try:
        service.index.ensure()
    except KbError as exc:  # the index is down: the bot starts anyway, searches retry (in-process) on use
        logging.getLogger("kb").warning("search index unavailable at start: %s", exc)
    workers = SearchWorkers(settings, settings.search_processes)
    workers.warm_up()
    return workers


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (Kubernetes, systemd, docker stop) ends `kb serve` as Ctrl-C does: through the ``finally`` blocks,
    so the scheduler gives up its lease to another replica at once and the service closes (an embedded Weaviate
    stops with it). Without a handler, uvicorn re-raises the signal after its graceful shutdown and the process
    dies there, before any of that; Socket Mode would die at once."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> None:
    logs.configure("text", level=os.environ.get("KB_LOG_LEVEL", "WARNING"))
    try:
        code = cli.main(args=argv, prog_name="kb", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("kb: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "kb"
        click.echo(f"{command}: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except KbError as exc:
        click.echo(f"kb: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug or an outage: one line for the user, the traceback in the debug log
        logging.getLogger("kb").debug("unexpected error", exc_info=exc)
        click.echo(f"kb: unexpected error: {type(exc).__name__}: {exc} (KB_LOG_LEVEL=DEBUG shows the traceback)",
                   err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
