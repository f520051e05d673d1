"""Every command runs as a task: a plan, timed steps, and a result or an error, kept in the SQL store."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import col

from store.db import Database
from store.models import Task, TaskStatus, utcnow

log = logging.getLogger(__name__)
current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)
current_task_labels: ContextVar[dict[str, str]] = ContextVar("current_task_labels", default={})  # noqa: B039


class TaskIdFilter(logging.Filter):
    """Puts the running task's id (or ``-``) on every log record, for the formatter's ``%(task_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = current_task_id.get() or "-"
        return True


class TaskRun:
    def __init__(self, db: Database, task: Task) -> None:
        self.db = db
        self.task = task
        self.steps: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self._started = time.perf_counter()

    @property
    def id(self) -> str:
        return self.task.id

    @contextmanager
    def step(self, name: str, **detail: Any) -> Iterator[dict[str, Any]]:
        """Time one step of the plan; what the block puts in the yielded dict is logged with it."""
        record: dict[str, Any] = {"name": name, **detail}
        started = time.perf_counter()
        try:
            yield record
            record["status"] = "ok"
        except BaseException as exc:
            record["status"] = "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record["ms"] = round((time.perf_counter() - started) * 1000, 1)
            self.steps.append(record)
            log.info("task %s step %s %s in %.1f ms", self.id, name, record["status"], record["ms"])

    def _save(self, status: TaskStatus, error: str | None) -> None:
        """One UPDATE, not a load and a flush: ORM work holds the interpreter lock that Slack's acks wait for."""
        with self.db.session() as session:
            session.exec(update(Task).where(col(Task.id) == self.id).values(
                steps=list(self.steps), result=dict(self.result), status=status, error=error,
                finished_at=utcnow(), duration_ms=round((time.perf_counter() - self._started) * 1000, 1)))


TaskObserver = Callable[[TaskRun, str, float], None]  # run, outcome (succeeded|failed), seconds


@contextmanager
def run_task(db: Database, *, role: str, command: str, actor: str, input: str, plan: list[str],
             on_finish: TaskObserver | None = None) -> Iterator[TaskRun]:
    task = Task(id=uuid.uuid4().hex[:12], role=role, command=command, actor=actor, input=input[:4000], plan=plan)
    with db.session() as session:  # Core, not the unit of work (see TaskRun._save)
        session.exec(insert(Task).values(task.model_dump()))
    run = TaskRun(db, task)
    token = current_task_id.set(task.id)
    labels = current_task_labels.set({"task_id": task.id, "role": role, "command": command})
    try:
        yield run
    except BaseException as exc:
        run._save(TaskStatus.FAILED, f"{type(exc).__name__}: {exc}")
        if on_finish is not None:
            on_finish(run, "failed", time.perf_counter() - run._started)
        raise
    else:
        run._save(TaskStatus.SUCCEEDED, None)
        if on_finish is not None:
            on_finish(run, "succeeded", time.perf_counter() - run._started)
    finally:
        current_task_labels.reset(labels)
        current_task_id.reset(token)
