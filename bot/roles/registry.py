"""Which role serves which command, and what each role may read, do and spend. One table, read top to bottom.

A role is more than a prompt: it reads declared sources, may take declared actions, is invoked by declared
people, and runs within declared limits. The service layer looks the role up here for every task it runs, and
the Slack router and the CLI find the role of a command here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.config import Settings


class Invokers(StrEnum):
    ANYONE = "anyone"  # any workspace member, or the CLI user
    APPROVERS = "approvers"  # KB_APPROVERS
    SYSTEM = "system"  # the bot itself, never a person directly


class ModelTier(StrEnum):
    MAIN = "main"  # KB_ANTHROPIC_MODEL
    SMALL = "small"  # KB_ANTHROPIC_SMALL_MODEL
    NONE = "none"  # no language model at all


@dataclass(frozen=True)
class RoleSpec:
    name: str
    purpose: str
    reads: frozenset[str]
    may: frozenset[str]
    invokers: Invokers
    tier: ModelTier
    max_tokens: int = 0
    max_passages: int = 0
    fallback: str = ""

    def model(self, settings: Settings) -> str | None:
        return {ModelTier.MAIN: settings.anthropic_model, ModelTier.SMALL: settings.anthropic_small_model,
                ModelTier.NONE: None}[self.tier]

    def timeout(self, settings: Settings) -> float:
        return settings.llm_timeout_seconds

    def passages(self, settings: Settings) -> int:
        """The role's own cap, lowered further by KB_ANSWER_MAX_PASSAGES."""
        return min(self.max_passages, settings.answer_max_passages)


def _role(name: str, purpose: str, *, reads: set[str], may: set[str], invokers: Invokers, tier: ModelTier,
          max_tokens: int = 0, max_passages: int = 0, fallback: str = "") -> RoleSpec:
    return RoleSpec(name, purpose, frozenset(reads), frozenset(may), invokers, tier, max_tokens, max_passages,
                    fallback)


ROLES: dict[str, RoleSpec] = {role.name: role for role in [
    _role("answerer", "Answers a question only from approved entries, citing entry@version, or says it does not "
          "know.", reads={"index"}, may={"answer", "record_gap"}, invokers=Invokers.ANYONE, tier=ModelTier.MAIN,
          max_tokens=1024, max_passages=8, fallback="extractive answer: quoted key lines with citations"),
    _role("curator", "Turns a thread or a note into a structured draft; keeps the source's facts and invents none.",
          reads={"thread", "note"}, may={"draft", "submit_proposal"}, invokers=Invokers.ANYONE,
          tier=ModelTier.MAIN, max_tokens=2048, fallback="the text as the draft, with a heading-based structure"),
    _role("reviewer", "Checks a submitted proposal against approved entries: near-duplicates, contradictions, "
          "stale or risky content. Annotates the approval card; never decides.", reads={"proposal", "index"},
          may={"annotate_proposal"}, invokers=Invokers.SYSTEM, tier=ModelTier.SMALL, max_tokens=1024,
          max_passages=5, fallback="similarity-only duplicate check and rule-based risk flags"),
    _role("librarian", "Reads the store back: entries, pending proposals, task traces; imports and reindexes.",
          reads={"entries", "proposals", "tasks"}, may={"import", "reindex"}, invokers=Invokers.ANYONE,
          tier=ModelTier.NONE),
    _role("searcher", "Plain retrieval over approved entries, no answer.", reads={"index"}, may=set(),
          invokers=Invokers.ANYONE, tier=ModelTier.NONE),
    _role("scheduler", "The bot's own jobs: apply the outbox, reconcile the index, ask owners to re-verify, "
          "remind approvers, digest knowledge gaps.", reads={"entries", "proposals", "tasks", "index"},
          may={"sync_index", "repair_index", "notify"}, invokers=Invokers.SYSTEM, tier=ModelTier.NONE),
    _role("approver", "A human decision on a proposal, recorded once.", reads={"proposals"},
          may={"approve", "reject"}, invokers=Invokers.APPROVERS, tier=ModelTier.NONE),
]}

# `/kb <command>` and `kb <command>`: the one place that says which role serves which command.
COMMAND_ROLES: dict[str, str] = {
    "ask": "answerer",
    "propose": "curator",
    "review": "reviewer",
    "search": "searcher",
    "show": "librarian",
    "pending": "librarian",
    "trace": "librarian",
    "channel": "librarian",
    "import": "librarian",
    "reindex": "librarian",
    "reverify": "librarian",
    "reconcile": "scheduler",
    "approve": "approver",
    "reject": "approver",
}


def role_for(command: str) -> RoleSpec:
    return ROLES[COMMAND_ROLES[command]]
