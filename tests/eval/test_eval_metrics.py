"""Generation metrics on fixed strings: each is the existing implementation it names, on 0..1."""
from __future__ import annotations

import pytest
import sacrebleu

from llmrunner.eval.metrics import METRICS, process_chrf, process_contains, score_output


def test_exact_match_is_lm_evals_on_stripped_strings() -> None:
    assert score_output("exact_match", " Paris\n", "Paris") == 1.0
    assert score_output("exact_match", "paris", "Paris") == 0.0
    assert score_output("exact_match", "Paris, France", "Paris") == 0.0


def test_contains_is_case_folded() -> None:
    assert score_output("contains", "The answer is PARIS.", "paris") == 1.0
    assert score_output("contains", "The answer is Lyon.", "paris") == 0.0


def test_chrf_is_sacrebleus_sentence_chrf() -> None:
    assert score_output("chrf", "a domestic animal", "a domestic animal") == pytest.approx(1.0)
    assert score_output("chrf", "xyz", "a domestic animal") == 0.0
    partial = score_output("chrf", "a wild animal", "a domestic animal")
    assert partial == pytest.approx(sacrebleu.sentence_chrf("a wild animal", ["a domestic animal"]).score / 100)
    assert 0 < partial < 1


def test_rouge_l_is_the_lcs_f1() -> None:
    # LCS "the cat sat" = 3 tokens: precision 3/3, recall 3/6, F1 2/3
    assert score_output("rouge_l", "the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert score_output("rouge_l", "dogs bark", "the cat sat") == 0.0


def test_every_schema_metric_has_a_process_hook() -> None:
    from llmrunner.eval import metrics
    from llmrunner.schemas import load_schema

    assert set(METRICS) == set(load_schema("evalset")["properties"]["metric"]["enum"])
    assert all(callable(getattr(metrics, f"process_{m}")) for m in METRICS)
    assert process_contains({"reference": "cat"}, ["A Cat."]) == {"contains": 1.0}
    assert process_chrf({"reference": "cat"}, ["cat"]) == {"chrf": pytest.approx(1.0)}
