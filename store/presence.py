"""The bot in channels: each channel's mode, Events API de-duplication, the threads the bot answered in, and
drafts captured by reaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.errors import NotAllowed, NotFound
from store.leases import mark_once
from store.lifecycle import audit
from store.models import BotThread, CaptureDraft, ChannelMode, ChannelSetting, JobMark, SlackEvent, Task, utcnow


def channel_mode(session: Session, channel: str, *, answer_channels: set[str], alert_channels: set[str]
                 ) -> ChannelMode:
    """The mode set at run time, else the settings' default for the channel, else off."""
    setting = session.get(ChannelSetting, channel)
    if setting is not None:
        return setting.mode
    answer, alert = channel in answer_channels, channel in alert_channels
    return ChannelMode.BOTH if answer and alert else ChannelMode.ANSWER if answer else \
        ChannelMode.ALERT if alert else ChannelMode.OFF


def set_channel_mode(session: Session, *, channel: str, mode: ChannelMode, by: str) -> ChannelSetting:
    setting = session.get(ChannelSetting, channel) or ChannelSetting(channel=channel, mode=mode, set_by=by)
    setting.mode, setting.set_by, setting.set_at = mode, by, utcnow()
    session.add(setting)
    audit(session, actor=by, action="channel.mode_set", subject_type="channel", subject_id=None, channel=channel,
          mode=mode.value)
    return setting


def channel_settings(session: Session) -> list[ChannelSetting]:
    return list(session.exec(select(ChannelSetting).order_by(col(ChannelSetting.channel))))


def first_delivery(session: Session, event_id: str) -> bool:
    """True the first time an event id is seen; a retried delivery gets False."""
    try:
        with session.begin_nested():
            session.add(SlackEvent(event_id=event_id[:64]))
    except IntegrityError:
        return False
    return True


def record_thread(session: Session, *, channel: str, thread_ts: str, task_id: str, kind: str = "answer",
                  fingerprint: str | None = None) -> None:
    session.add(BotThread(channel=channel, thread_ts=thread_ts, task_id=task_id, kind=kind, fingerprint=fingerprint))


def thread_tasks(session: Session, *, channel: str, thread_ts: str) -> list[Task]:
    """The bot's earlier answers in a thread, oldest first."""
    rows = session.exec(select(Task).join(BotThread, col(BotThread.task_id) == col(Task.id))
                        .where(BotThread.channel == channel, BotThread.thread_ts == thread_ts)
                        .order_by(col(BotThread.at)))
    return list(rows)


def alert_answered_since(session: Session, *, channel: str, fingerprint: str, since: datetime) -> bool:
    found = session.exec(select(BotThread).where(BotThread.channel == channel, BotThread.fingerprint == fingerprint,
                                                 col(BotThread.at) >= since)).first()
    return found is not None


def replies_since(session: Session, *, channel: str, kind: str, since: datetime) -> int:
    return int(session.exec(select(func.count()).select_from(BotThread).where(
        BotThread.channel == channel, BotThread.kind == kind, col(BotThread.at) >= since)).one())


def get_capture(session: Session, draft_id: int, *, user: str) -> CaptureDraft:
    draft = session.get(CaptureDraft, draft_id)
    if draft is None:
        raise NotFound(f"There is no captured draft #{draft_id}.")
    if draft.user != user:
        raise NotAllowed("Only the person who captured this thread can submit or discard its draft.")
    return draft


AUTO_ANSWER_JOB = "auto-answer-in-flight"
STALE_RESERVATION = timedelta(minutes=10)  # an answer that never finished (a crashed replica) frees its slot


def reserve_auto_answer(session: Session, *, channel: str, budget: int, since: datetime) -> str | None:
    """A slot for one unasked-for answer in ``channel``, or None when the replies of the last hour and the
    answers in flight (on any replica) already fill ``budget``. The slot is a unique row, so two replicas never
    hold the same one; whoever counts last sees both, so two questions at once cannot both take the last reply."""
    session.execute(delete(JobMark).where(col(JobMark.job) == AUTO_ANSWER_JOB,
                                          col(JobMark.at) < utcnow() - STALE_RESERVATION))
    for slot in range(budget):
        key = f"{channel}:{slot}"
        if mark_once(session, job=AUTO_ANSWER_JOB, key=key):
            session.commit()
            in_flight = int(session.exec(select(func.count()).select_from(JobMark).where(
                JobMark.job == AUTO_ANSWER_JOB, col(JobMark.key).startswith(f"{channel}:"))).one())
            if replies_since(session, channel=channel, kind="auto", since=since) + in_flight <= budget:
                return key
            release_auto_answer(session, key)
            return None
    return None


def release_auto_answer(session: Session, key: str) -> None:
    session.execute(delete(JobMark).where(col(JobMark.job) == AUTO_ANSWER_JOB, col(JobMark.key) == key))
    session.commit()
