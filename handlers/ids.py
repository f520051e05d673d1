"""Every action_id, callback_id and block_id the app uses, in one place."""

from __future__ import annotations

from enum import StrEnum

COMMAND = "/kb"


class AnswerAction(StrEnum):
    SHARE = "answer_share"
    HELPFUL = "answer_helpful"
    NOT_HELPFUL = "answer_not_helpful"
    PROPOSE = "answer_propose"


class ApprovalAction(StrEnum):
    APPROVE = "proposal_approve"
    EDIT = "proposal_edit"
    REJECT = "proposal_reject"


class ReviewAction(StrEnum):
    """On the owner's "is this still true?" DM."""

    REVERIFY = "entry_reverify"
    EDIT = "entry_edit"
    DEPRECATE = "entry_deprecate"


class ChannelAction(StrEnum):
    SHOW_ENTRY = "entry_show"  # under a runbook reply to an alert
    CAPTURE_SUBMIT = "capture_submit"  # in the DM after a capture reaction
    CAPTURE_EDIT = "capture_edit"
    CAPTURE_DISCARD = "capture_discard"


class Shortcut(StrEnum):
    PROPOSE_THREAD = "propose_to_kb"


class View(StrEnum):
    PROPOSE = "propose_modal"
    DRAFTING = "drafting_modal"
    EDIT = "edit_modal"
    REJECT = "reject_modal"
    UPDATE_ENTRY = "update_entry_modal"
    DEPRECATE_ENTRY = "deprecate_entry_modal"


class Block(StrEnum):
    TITLE = "title"
    BODY = "body"
    TAGS = "tags"
    REASON = "reason"


class Field(StrEnum):
    """action_ids of the inputs inside modals."""

    TITLE = "title_input"
    BODY = "body_input"
    TAGS = "tags_input"
    REASON = "reason_input"
