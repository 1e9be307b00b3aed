"""Generation metrics: one generated output scored against its reference answer, 0 to 1, higher is better.

Each metric is an existing implementation, so a score means what it means elsewhere: exact_match is
lm-eval's (on stripped strings), contains a case-folded substring test, chrf sacrebleu's sentence chrF
(divided by 100), rouge_l rouge-score's ROUGE-L F1. The `process_<metric>` functions are the lm-eval
`process_results` hooks the generation tasks name (`!function llmrunner.eval.metrics.process_chrf`), so
lm-eval's aggregate and the per-item lines come from the same numbers.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache


def _exact_match(output: str, reference: str) -> float:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    return float(exact_match_hf_evaluate(predictions=[output.strip()], references=[reference.strip()])
                 ["exact_match"])


def _contains(output: str, reference: str) -> float:
    return float(reference.casefold() in output.casefold())


def _chrf(output: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_chrf(output, [reference]).score / 100


@cache
def _rouge_scorer():  # noqa: ANN202 (rouge_score has no type hints)
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"])


def _rouge_l(output: str, reference: str) -> float:
    return float(_rouge_scorer().score(reference, output)["rougeL"].fmeasure)


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": _exact_match, "contains": _contains, "chrf": _chrf, "rouge_l": _rouge_l}


def score_output(metric: str, output: str, reference: str) -> float:
    """How well `output` matches `reference` by `metric` (a key of METRICS), 0 to 1."""
    return METRICS[metric](output, reference)


def _process_results(metric: str) -> Callable[[dict, list[str]], dict[str, float]]:
    def process(doc: dict, results: list[str]) -> dict[str, float]:
        return {metric: score_output(metric, results[0], doc["reference"])}

    process.__name__ = f"process_{metric}"
    return process


process_exact_match = _process_results("exact_match")
process_contains = _process_results("contains")
process_chrf = _process_results("chrf")
process_rouge_l = _process_results("rouge_l")
