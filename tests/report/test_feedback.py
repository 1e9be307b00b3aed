"""Feedback samples (reports/feedback/): flipped eval items, largest gains and losses, and samples of the
training data that changed, on crafted eval results and udatasets outputs."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.report.__main__ import main
from llmrunner.report.feedback import Reservoir
from tests.report.conftest import write_items, write_json

LN2 = math.log(2)


def write_set(root: Path, stage: str, name: str, kind: str, version: str, higher: bool, records: list[dict]) -> None:
    """One set's items file and its entry in the stage's results.json."""
    write_items(root, stage, name, records)
    path = root / "reports" / "eval" / stage / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"stage": stage, "sets": {}}
    results["sets"][name] = {"kind": kind, "version": version, "items": len(records), "metric": "m",
                             "higher_is_better": higher, "score": 0.5, "metrics": {}, "chat_template": False}
    write_json(path, results)


def scored(prefix: str, scores: list[float], outputs: list[str] | None = None) -> list[dict]:
    records = [{"id": f"{prefix}{i}", "score": s, "metrics": {"m": s}} for i, s in enumerate(scores)]
    for record, output in zip(records, outputs or []):
        record["output"] = output
    return records


def perplexity(bpb: list[float]) -> list[dict]:
    """Documents of 100 bytes scoring `bpb` bits per byte each."""
    return [{"id": f"p{i}", "score": b, "metrics": {"bits_per_byte": b, "loglikelihood": -b * 100 * LN2, "bytes": 100}}
            for i, b in enumerate(bpb)]


def feedback(out: Path, root: Path, baseline: Path | None = None, *extra: str) -> dict[str, str]:
    args = ["feedback", "--root", str(root), "--out", str(out), *extra]
    main(args + (["--baseline-root", str(baseline)] if baseline else []))
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """Two experiments, `old` (the baseline) and `new`, with base and sft scored on four sets."""
    old, new = tmp_path / "experiments" / "old", tmp_path / "experiments" / "new"
    for root, mc, gen, ppl, version in (
            (old, [1, 0, 1, 0, 1], [0.2, 0.6, 0.9, 0.4], [3.0, 2.0, 4.0], "v1"),
            (new, [0, 1, 1, 0, 1], [0.7, 0.3, 0.93, 0.45], [2.0, 2.5, 3.9], "v2")):
        for stage in ("base", "sft"):
            write_set(root, stage, "mc", "multiple_choice", "m1", True, scored("q", mc))
            outputs = [f"{root.name} answer {i}" for i in range(len(gen))]
            write_set(root, stage, "gen", "generation", "g1", True, scored("g", gen, outputs))
            write_set(root, stage, "ppl", "perplexity", "p1", False, perplexity(ppl))
            write_set(root, stage, "grown", "multiple_choice", version, True, scored("x", [0, 1]))
    tasks = new / "reports" / "eval" / "sft" / "tasks" / "gen.jsonl"
    tasks.parent.mkdir(parents=True)
    tasks.write_text("".join(json.dumps({"id": f"g{i}", "prompt": f"Define word {i}", "reference": f"meaning {i}"})
                             + "\n" for i in range(4)))
    return tmp_path


def test_flips_gains_and_losses(pool: Path, tmp_path: Path) -> None:
    pages = feedback(tmp_path / "fb", pool / "experiments" / "new", pool / "experiments" / "old")
    assert sorted(pages) == ["data.jsonl", "data.md", "eval.jsonl", "eval.md", "index.md"]
    entries = [e for e in lines(pages["eval.jsonl"]) if e["stage"] == "sft"]
    by = {(e["set"], e["entry"], e.get("became")): e for e in entries}
    # multiple choice: one flip each way; scores of 0 or 1 have no gains or losses apart from the flips
    assert [(e["id"], e["became"]) for e in entries if e["set"] == "mc"] == [("q1", "right"), ("q0", "wrong")]
    mc = by[("mc", "flipped", "wrong")]
    assert (mc["before"]["score"], mc["after"]["score"], mc["change"]) == (1, 0, -1)
    assert mc["before"]["experiment"] == "old" and mc["after"]["experiment"] == "new"
    # generation: graded scores flip at 0.5, both outputs are kept, and the item's reference comes along
    gen = [e for e in entries if e["set"] == "gen"]
    assert [(e["id"], e["entry"], e.get("became")) for e in gen] == [
        ("g0", "flipped", "right"), ("g1", "flipped", "wrong"), ("g0", "gain", None), ("g3", "gain", None),
        ("g2", "gain", None), ("g1", "loss", None)]
    assert gen[0]["before"]["output"] == "old answer 0" and gen[0]["after"]["output"] == "new answer 0"
    assert gen[0]["item"] == {"prompt": "Define word 0", "reference": "meaning 0"}
    assert [round(e["change"], 4) for e in gen[2:]] == [0.5, 0.05, 0.03, -0.3]
    # perplexity: lower bits per byte is the gain, largest first
    ppl = [(e["id"], e["entry"], round(e["change"], 4)) for e in entries if e["set"] == "ppl"]
    assert ppl == [("p0", "gain", 1.0), ("p2", "gain", 0.1), ("p1", "loss", -0.5)]
    assert not [e for e in entries if e["set"] == "grown"]
    md = pages["eval.md"]
    assert "## new sft against old sft" in md and "## new base against old base" in md
    assert "### grown (multiple_choice), version `v2`\n\nDifferent versions (`v1` and `v2`), not compared." in md
    assert "4 items paired by id. Flipped: 1 became right, 1 became wrong." in md
    assert "Scores are 0 or 1: the flipped items are the gains and losses." in md
    assert "| `g0` | 0.2 | 0.7 | +0.5 | Define word 0 | meaning 0 | old answer 0 | new answer 0 |" in md
    assert "baseline `old`" in pages["index.md"] and "flipped items: 8, in 8 set comparisons" in pages["index.md"]


def test_flips_and_top_are_bounded_and_seeded(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    rng = random.Random(1)
    for root in (old, new):
        mc = [rng.randint(0, 1) for _ in range(200)]
        write_set(root, "sft", "mc", "multiple_choice", "m1", True, scored("q", mc))
        write_set(root, "sft", "gen", "generation", "g1", True, scored("g", [rng.random() for _ in range(200)]))
    first = feedback(tmp_path / "a", new, old, "--flips", "4", "--top", "3")
    assert first == feedback(tmp_path / "b", new, old, "--flips", "4", "--top", "3")
    entries = lines(first["eval.jsonl"])
    for name in ("mc", "gen"):
        for became in ("right", "wrong"):
            assert len([e for e in entries if e["set"] == name and e.get("became") == became]) == 4
    gains = [e["change"] for e in entries if e["entry"] == "gain"]
    losses = [e["change"] for e in entries if e["entry"] == "loss"]
    assert len(gains) == len(losses) == 3 and gains == sorted(gains, reverse=True) and losses == sorted(losses)
    other = lines(feedback(tmp_path / "c", new, old, "--flips", "4", "--seed", "7")["eval.jsonl"])
    assert [e["id"] for e in other if e["entry"] == "flipped"] != [e["id"] for e in entries if e["entry"] == "flipped"]


def test_without_a_baseline_the_final_stage_against_base(pool: Path, tmp_path: Path) -> None:
    root = pool / "experiments" / "new"
    write_set(root, "sft", "mc", "multiple_choice", "m1", True, scored("q", [1, 1, 1, 1, 1]))
    pages = feedback(tmp_path / "fb", root)
    assert "has no baseline (`baseline:` in pipeline.yaml): its own final stage (sft) is set against its base model" \
        in pages["eval.md"]
    assert "## new sft against new base" in pages["eval.md"]
    mc = [(e["id"], e["became"]) for e in lines(pages["eval.jsonl"]) if e["set"] == "mc"]
    assert mc == [("q0", "right"), ("q3", "right")]
    assert "### gen (generation), version `g1`\n\n4 items paired by id.\n\nNo item's score changed." in pages["eval.md"]
    assert "Experiment `new` has no baseline: every dataset is sampled." in pages["data.md"]


# ---------------------------------------------------------------- training data

def write_lines(path: Path, objects: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))


REASONS = {"too_short": 10, "empty": 2, "contaminated:mc": 1}
CLUSTERS = {7: 5, 20: 2, 3: 1}  # kept record's raw line -> duplicates that matched it


def processed(root: Path, kind: str, dataset: str, docs: list[str], with_rejects: bool = False) -> None:
    folder = root / "data" / "processed" / kind
    write_lines(folder / f"{dataset}.jsonl", [{"text": d} for d in docs])
    if with_rejects:
        write_lines(folder / f"{dataset}.rejects.jsonl",
                    [{"file": "part-0.jsonl", "line": 100 + i, "reason": reason, "raw": f"{reason} {i}"}
                     for reason, n in REASONS.items() for i in range(n)])
        dups, line = [], 50
        for kept, n in CLUSTERS.items():
            for _ in range(n):
                dups.append({"file": "part-0.jsonl", "line": line, "kind": "exact",
                             "duplicate_of": {"dataset": dataset, "file": "part-0.jsonl", "line": kept}})
                line += 1
        dups.append({"file": "part-0.jsonl", "line": line, "kind": "near",
                     "duplicate_of": {"dataset": dataset, "file": "part-0.jsonl", "line": 7}})
        write_lines(folder / f"{dataset}.duplicates.jsonl", dups)
        write_lines(root / "data" / "raw" / kind / dataset / "part-0.jsonl",
                    [json.dumps({"text": f"raw {n}"}) for n in range(1, 121)])
    write_json(folder / f"{dataset}.stats.json", {"input": len(docs) + 30, "kept": len(docs),
                                                  "rejected": REASONS if with_rejects else {}, "duplicates": {}})


@pytest.fixture
def data_pool(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    processed(old, "cpt", "web", [f"old document {i}" for i in range(100)])
    processed(new, "cpt", "web", [f"new document {i}" for i in range(100)], with_rejects=True)
    processed(old, "cpt", "books", ["a book"])
    for root in (old, new):
        processed(root, "sft", "chat", ["same"])
    return old, new


def test_changed_datasets_are_sampled(data_pool: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = data_pool
    pages = feedback(tmp_path / "fb", new, old, "--kept", "4", "--rejects", "3", "--clusters", "2")
    samples = lines(pages["data.jsonl"])
    assert sorted({(s["kind"], s["dataset"], s["experiment"]) for s in samples}) == [
        ("cpt", "books", "old"), ("cpt", "web", "new")]
    assert "Unchanged (the same processed data), not sampled: sft `chat`." in pages["data.md"]
    web = [s for s in samples if s["dataset"] == "web"]
    kept = [s for s in web if s["sample"] == "kept"]
    assert len(kept) == 4 and all(s["record"]["text"] == f"new document {s['line'] - 1}" for s in kept)
    assert [s["line"] for s in kept] == sorted(s["line"] for s in kept)
    rejects = [s for s in web if s["sample"] == "reject"]
    assert {r: len([s for s in rejects if s["reason"] == r]) for r in REASONS} == {r: min(3, n) for r, n in
                                                                                  REASONS.items()}
    assert all(s["record"]["reason"] == s["reason"] for s in rejects)
    clusters = [s["record"] for s in web if s["sample"] == "duplicate_cluster"]
    assert [c["size"] for c in clusters] == [7, 3]  # the kept record at line 7 and its 6 duplicates first
    assert clusters[0]["duplicates_by_kind"] == {"exact": 5, "near": 1}
    assert clusters[0]["kept"] == {"dataset": "web", "file": "part-0.jsonl", "line": 7, "raw": '{"text": "raw 7"}'}
    assert [d["line"] for d in clusters[0]["duplicates"]] == [50, 51, 52, 53, 54]  # --members 5, file order
    assert clusters[0]["duplicates"][0]["raw"] == '{"text": "raw 50"}'
    books = [s["sample"] for s in samples if s["dataset"] == "books"]
    assert books == ["kept"]
    assert ("## cpt `books` (only in old; from old)\n\nKept: 1 of 1, at random (augmented records included).\n\n"
            "| line | record |\n|---|---|\n| 1 | a book |\n\nNo rejects.\n\nNo duplicates.") in pages["data.md"]
    md = pages["data.md"]
    assert "## cpt `web` (processed data differs; from new)" in md and "## cpt `books` (only in old; from old)" in md
    assert "Rejected as `too_short`: 3 of 10, at random." in md and "Rejected as `empty`: 2 of 2, at random." in md
    assert "Duplicate clusters: the 2 largest of 3." in md


def test_samples_are_deterministic(data_pool: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = data_pool
    first = feedback(tmp_path / "a", new, old)
    assert feedback(tmp_path / "b", new, old) == first
    other = feedback(tmp_path / "c", new, old, "--seed", "3")
    assert [s for s in lines(other["data.jsonl"]) if s["sample"] == "kept"] != \
        [s for s in lines(first["data.jsonl"]) if s["sample"] == "kept"]


def test_reservoir_is_uniform_and_bounded() -> None:
    """Every item of a stream is drawn about equally often, and the sample never grows past its size."""
    counts = [0] * 10
    for seed in range(3000):
        sample = Reservoir(3, random.Random(seed))
        for item in range(10):
            sample.add(item)
            assert len(sample.items) <= 3
        for item in sample.items:
            counts[item] += 1
    assert all(abs(c - 900) < 90 for c in counts), counts


def test_missing_experiment_folders(data_pool: tuple[Path, Path], tmp_path: Path) -> None:
    """The experiment's folder must exist; a baseline that has not run yet is said, and has nothing."""
    _, new = data_pool
    with pytest.raises(StageError, match="gone does not exist; pass the experiment's DATAPOOL_ROOT .* --root"):
        main(["feedback", "--root", str(tmp_path / "gone"), "--out", str(tmp_path / "fb")])
    pages = feedback(tmp_path / "fb", new, tmp_path / "gone")
    assert f"The baseline has no folder `{tmp_path / 'gone'}` (not run yet)" in pages["index.md"]
    assert "(the stages both scored: none)" in pages["eval.md"]
    assert "## cpt `web` (only in new; from new)" in pages["data.md"]
