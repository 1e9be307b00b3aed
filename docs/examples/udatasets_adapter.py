"""An example custom adapter for the udatasets step (see docs/stages.md, udatasets).

Raw records of a Q&A forum dump, e.g.
    {"question": {"title": "...", "body": "..."}, "answers": [{"text": "...", "score": 3}, ...], "site": "..."}
become SFT chats: the question as the user turn, its best-scored answer as the assistant's.

In pipeline.yaml:
    data:
      sft:
        forum:
          sources: [resources/forum/*.jsonl]
          adapter: custom
          adapter_function: docs/examples/udatasets_adapter.py:best_answer
"""
from __future__ import annotations


def best_answer(record: dict) -> dict | None:
    question = record.get("question")
    answers = [a for a in record.get("answers") or [] if isinstance(a, dict) and isinstance(a.get("text"), str)]
    if not isinstance(question, dict) or not isinstance(question.get("body"), str):
        raise ValueError("no_question")  # rejected with this reason: "custom: no_question"
    if not answers:
        return None  # rejected as "custom_rejected"
    best = max(answers, key=lambda a: a.get("score") or 0)
    prompt = f"{question.get('title', '')}\n\n{question['body']}".strip()
    # Any key besides "messages" is kept as metadata; the result is validated like any SFT record.
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": best["text"]}],
            "site": record.get("site")}
