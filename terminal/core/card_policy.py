"""Which card may pay here, right after its tap was read (core, no I/O).

One decision, taken online and offline right after the local SUN check and before any network
call or the offline policy (`terminal.core.risk`):

1. a card whose keys the terminal lacks (unknown issuer) follows the policy of its URL's host:
   `require-verification` refuses it; `online-only` lets its issuer check it online, and refuses
   it while the terminal is offline. An unverified card is never accepted offline either way;
2. a blocked card (`terminal.core.hotlist`) is refused with `card-blocked` and the reason;
3. the card's limits and velocity (`terminal.core.card_limits`).

Unknown cards cannot be named (their UID is inside `p`, encrypted under keys we lack), so only
rule 1 applies to them: the hotlist and the limits need a verified card id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from terminal.core.card_limits import CardLimits, CardSpend, decide_limits, explain
from terminal.core.hotlist import Block

CARD_BLOCKED = "card-blocked"
UNKNOWN_CARD_REFUSED = "unknown-card-refused"  # require-verification
UNKNOWN_CARD_OFFLINE = "unknown-card-offline"  # online-only, and the terminal is offline


class UnknownCardPolicy(enum.Enum):
    REQUIRE_VERIFICATION = "require-verification"
    ONLINE_ONLY = "online-only"


@dataclass(frozen=True)
class CardRefusal:
    code: str
    message: str
    rule: str = ""  # the rule's own name (for the books): a LimitRule value, the policy, …


def blocked_message(block: Block) -> str:
    who = "this terminal" if block.by_terminal else f"the list {block.source}"
    reason = block.reason.rstrip().rstrip(".!?…") or "no reason given"
    return f"This card is blocked by {who}: {reason}. Ask for another way to pay."


def unknown_card_message(policy: UnknownCardPolicy, host: str, *, online: bool) -> str:
    where = host or "its issuer"
    if policy is UnknownCardPolicy.REQUIRE_VERIFICATION:
        return (f"This card could not be verified here: the terminal has no keys for it, and "
                f"cards from {where} must be verified on this terminal. Refused; nothing was "
                "sent. Pay by QR, or ask the issuer for the card's keys.")
    return (f"This card could not be verified here (no keys for it on this terminal). Cards from "
            f"{where} are accepted only online, when their issuer checks them, and the terminal "
            "is offline now.")


def decide_card(
    *,
    verified_card_id: str | None,
    host: str,
    online: bool,
    unknown_policy: UnknownCardPolicy,
    block: Block | None,
    limits: CardLimits,
    spend: CardSpend,
    amount_msat: int | None,
) -> CardRefusal | None:
    """None when the card may go on (online to its issuer, or to the offline policy)."""
    if verified_card_id is None:
        if unknown_policy is UnknownCardPolicy.REQUIRE_VERIFICATION:
            return CardRefusal(UNKNOWN_CARD_REFUSED,
                               unknown_card_message(unknown_policy, host, online=online),
                               unknown_policy.value)
        if not online:
            return CardRefusal(UNKNOWN_CARD_OFFLINE,
                               unknown_card_message(unknown_policy, host, online=online),
                               unknown_policy.value)
        return None
    if block is not None:
        return CardRefusal(CARD_BLOCKED, blocked_message(block), block.source)
    decision = decide_limits(amount_msat, spend, limits)
    if decision.rule is not None:
        return CardRefusal(decision.rule.value, explain(decision.rule, amount_msat, spend, limits),
                           decision.rule.value)
    return None
