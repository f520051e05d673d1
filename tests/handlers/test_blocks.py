"""Block Kit builders: Slack's limits hold for any input, and user text never pings anyone."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.home import CitationDetail
from bot.roles.answerer import Answer, Citation
from handlers import blocks, ids
from handlers.values import ProposalRef, decode_proposal, encode_proposal
from store.models import Decision, Proposal, ProposalStatus


def _proposal(body: str, title: str = "Disk full") -> Proposal:
    return Proposal(id=7, title=title, body=body, proposer="U123ABC", revision=3, tags=["disk"])


def _sections(built: list) -> list[str]:
    return [b.text.text for b in built if b.type == "section"]


def test_long_text_is_split_under_every_limit() -> None:
    body = "\n\n".join(f"Step {i}: " + "run the thing " * 40 for i in range(400))  # ~230k characters
    card = [b.to_dict() for b in blocks.card_blocks(_proposal(body), permalink=None)]
    assert len(card) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in card if b["type"] == "section")
    assert card[-1]["type"] == "actions"  # trimming never drops the buttons
    answer = Answer(text=body, citations=[Citation(1, None, "t", 2)], grounded=True)
    built = blocks.answer_blocks(answer, [], "task1")
    assert len(built) <= 50 and all(len(t) <= 3000 for t in _sections(built))


def test_user_text_cannot_mention_anyone() -> None:
    card = blocks.card_blocks(_proposal("ping <!channel> and <@U999> and <!subteam^S1>", title="<!here> x"),
                              permalink=None)
    rendered = str([b.to_dict() for b in card])
    assert "<!channel>" not in rendered and "<@U999>" not in rendered and "<!subteam" not in rendered
    assert "&lt;!channel&gt;" in rendered
    assert "<@U123ABC>" in rendered  # the proposer, a real user id, is mentioned on purpose


def test_button_values_round_trip_and_stay_small() -> None:
    card = blocks.card_blocks(_proposal("x"), permalink="https://example.slack.com/archives/C1/p1")
    values = [e["value"] for b in (x.to_dict() for x in card) if b["type"] == "actions" for e in b["elements"]]
    assert {decode_proposal(v) for v in values} == {ProposalRef(7, 3)}
    assert all(len(v) <= 2000 for v in values)
    assert len(encode_proposal(ProposalRef(10**12, 10**6))) <= 2000


def test_decided_card_has_no_buttons_and_says_who_and_when() -> None:
    decision = Decision(proposal_id=7, outcome=ProposalStatus.APPROVED, decided_by="U777XYZ",
                        decided_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), resulting_version=4)
    card = [b.to_dict() for b in blocks.card_blocks(_proposal("x"), permalink=None, decision=decision)]
    assert not any(b["type"] == "actions" for b in card)
    assert "Approved by <@U777XYZ> at 2026-01-02 03:04 UTC: now entry version v4." in str(card)


def test_edit_modal_splits_a_long_body_across_inputs() -> None:
    body = "line of text\n" * 700  # ~9,100 characters
    view = blocks.draft_modal(ids.View.EDIT, "Edit", draft_title="t", body=body, tags=["a"], private_metadata="m",
                              submit="Save").to_dict()
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    parts = [b["element"]["initial_value"] for b in inputs if b["block_id"].startswith("body_")]
    assert len(parts) == 4 and all(len(p) <= 3000 for p in parts)
    assert "\n".join(parts).split() == body.split()
    assert len(view["blocks"]) <= 100


def test_answer_citations_show_version_approver_and_overdue() -> None:
    detail = CitationDetail(entry_id=3, version=2, title="Drain a node", source_ref=None, approved_by="U42ABC",
                            approved_at=datetime(2026, 5, 1, tzinfo=UTC),
                            review_after=datetime(2026, 6, 1, tzinfo=UTC))
    answer = Answer(text="Cordon, then drain.", citations=[Citation(3, None, "Drain a node", 2)], grounded=True)
    rendered = str([b.to_dict() for b in blocks.answer_blocks(answer, [detail], "t1")])
    assert "entry #3 v2" in rendered and "approved by <@U42ABC>" in rendered
    assert "last verified 2026-05-01" in rendered and "overdue" in rendered
