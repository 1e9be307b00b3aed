"""The SFT conversation rules (docs/records.md), shared by udatasets (which rejects a conversation that
breaks them, with the reason) and tokenize_sft (which stops on one when udatasets is off)."""
from __future__ import annotations

ROLES = ("system", "user", "assistant", "tool")
# Turn order after the optional first system turn: which roles may follow each role. A tool turn carries
# the result of a call the assistant made in the turn before; the assistant then answers (or calls again).
NEXT_ROLES = {"user": ("assistant",), "assistant": ("user", "tool"), "tool": ("tool", "assistant")}


def turn_order_problem(roles: list[str]) -> str | None:
    """Why a conversation with these roles (each one of ROLES) is not trainable, or None (docs/records.md):
    at most one system turn, first; then the user, and user and assistant alternate, tool turns only after
    an assistant turn or another tool turn; the last turn is the assistant's."""
    if "user" not in roles:
        return "no_user_turn"
    if "assistant" not in roles:
        return "no_assistant_turn"
    if roles[-1] != "assistant":
        return "last_turn_not_assistant"
    if "system" in roles[1:]:
        return "system_not_first"
    turns = roles[1:] if roles[0] == "system" else roles
    if turns[0] != "user":
        return "first_turn_not_user"
    for previous, role in zip(turns, turns[1:]):
        if role not in NEXT_ROLES[previous]:
            return "tool_not_after_assistant" if role == "tool" else "roles_not_alternating"
    return None
