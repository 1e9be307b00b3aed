"""Decontamination: the hashed n-gram index finds exactly what a brute-force comparison of word lists finds
(short eval texts, runs across messages, texts longer than a hashing piece); a contaminated record is
rejected as contaminated:<set> and counted like every other reject; the report's counts are brute force's."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from llmrunner.errors import ConfigError
from llmrunner.evalsets import EvalSet, decontamination_texts, read_items
from llmrunner.udatasets import near_dup
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.decontaminate import EvalIndex
from llmrunner.udatasets.records import normalise
from tests.files import read_jsonl

VOCABULARY = "the a of Cat DOG sat on mat ran far near red blue green Über über straße STRASSE x y z".split()


# ---------------------------------------------------------------- the reference
def words_of(text: str) -> list[str]:
    return normalise(text, casefold=True).split()


def eval_grams(text: str, n: int) -> set[tuple[str, ...]]:
    """An eval text's grams: its n-word runs, or all its words when it has fewer."""
    words = words_of(text)
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def brute_force(items_by_set: dict[str, list[dict]], records: list[list[str]], n: int) -> list[dict[str, set[str]]]:
    """For each record: {set: ids of the items it shares a gram with}, by comparing word tuples."""
    grams = {name: [(item["id"], set().union(*(eval_grams(t, n) for t in decontamination_texts(item))))
                    for item in items] for name, items in items_by_set.items()}
    lengths = {len(g) for items in grams.values() for _, item_grams in items for g in item_grams}
    result = []
    for texts in records:
        runs = set()
        for text in texts:
            words = words_of(text)
            for length in lengths:
                runs.update(tuple(words[i:i + length]) for i in range(len(words) - length + 1))
        hits = {name: {item_id for item_id, item_grams in items if item_grams & runs}
                for name, items in grams.items()}
        result.append({name: ids for name, ids in hits.items() if ids})
    return result


def indexed(index: EvalIndex, records: list[list[str]]) -> list[dict[str, set[str]]]:
    return [{index.sets[s]: {index.item_ids[s][i] for i in items} for s, items in index.owners(matched).items()}
            for matched in index.matches(records)]


# ---------------------------------------------------------------- generated data
def phrase(rng: random.Random, low: int, high: int) -> str:
    """Words of a small vocabulary (so that runs repeat), in mixed case and spacing."""
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(low, high))]
    return "".join(w + rng.choice([" ", "  ", "\n", "\t "]) for w in words)


def generated_sets(rng: random.Random) -> dict[str, list[dict]]:
    return {
        "docs": [{"id": f"d{i}", "text": phrase(rng, 1, 30)} for i in range(40)],
        "mc": [{"id": f"q{i}", "question": phrase(rng, 2, 8), "choices": [phrase(rng, 1, 3), phrase(rng, 1, 3)],
                "label": rng.randint(0, 1)} for i in range(40)],
        "chat": [{"id": f"c{i}", "messages": [{"role": "system", "content": "the cat sat on the mat"},
                                              {"role": "user", "content": phrase(rng, 3, 16)}],
                  "reference": phrase(rng, 2, 20)} for i in range(40)],
    }


def generated_records(rng: random.Random, sets: dict[str, list[dict]]) -> list[list[str]]:
    records = [[phrase(rng, 0, 60) for _ in range(rng.randint(1, 3))] for _ in range(300)]
    doc = " ".join(sets["docs"][0]["text"].split() * 3)
    records += [[f"prefix words {doc} suffix"],  # a planted document
                [doc[: len(doc) // 2], doc[len(doc) // 2:]],  # split over two messages: runs across them don't count
                [""], ["   "], []]
    return records


@pytest.mark.parametrize("ngram", [13, 5, 1])
@pytest.mark.parametrize("piece_chars", [None, 40])
def test_index_finds_what_brute_force_finds(ngram, piece_chars, monkeypatch):
    if piece_chars:  # texts hashed a few words at a time: runs that cross hashing pieces
        monkeypatch.setattr(near_dup, "PIECE_CHARS", piece_chars)
    rng = random.Random(ngram)
    sets = generated_sets(rng)
    records = generated_records(rng, sets)
    index = EvalIndex.build(sets, ngram, 1)  # brute_force counts every short text whole
    expected = brute_force(sets, records, ngram)
    assert indexed(index, records) == expected
    # in batches of any size, and record by record: the same
    assert [hit for start in range(0, len(records), 7) for hit in indexed(index, records[start:start + 7])] == expected
    assert sum(1 for hits in expected if hits) > 20, "the generated data should hit often"


def test_short_eval_texts_count_whole_from_min_words():
    sets = {"mc": [{"id": "q", "question": "Red  Cat?", "choices": ["blue", "green dog"], "label": 1}]}
    records = [["a red cat? sat"], ["red cat"], ["the GREEN\tdog ran"], ["green"], ["green", "dog"], ["blue"]]
    index = EvalIndex.build(sets, 13, 1)
    assert [bool(hits) for hits in indexed(index, records)] == [True, False, True, False, False, False]
    # from 3 words: both 2-word texts are too common to count
    assert not any(indexed(EvalIndex.build(sets, 13, 3), records))


# ---------------------------------------------------------------- the udatasets step
EVAL_DOC = ("The quick brown fox jumps over the lazy dog while seven wise owls count the silver stars above "
            "the quiet harbour tonight.")


@pytest.fixture
def heldout(tmp_path) -> EvalSet:
    data = tmp_path / "heldout.jsonl"
    data.write_text(json.dumps({"text": EVAL_DOC}) + "\n" + json.dumps({"text": "Another held-out text."}) + "\n")
    return EvalSet.from_dict("heldout", {"kind": "perplexity", "data": str(data)})


@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    lines = [{"text": "A clean training document about boats."},
             {"text": "Preface. " + EVAL_DOC.upper().replace(" ", "  ") + " And more."},  # contaminated
             {"text": "A clean training document about boats."},  # duplicate
             {"text": "x"},  # too short
             {"text": "the quick brown fox jumps over the lazy dog while seven wise owls"},  # 13 words of it
             {"text": "the quick brown fox jumps over the lazy dog while seven wise"}]  # 12: clean
    (folder / "part.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_contaminated_records_are_rejected_and_counted(raw, heldout, tmp_path):
    settings = json.dumps({"decontaminate": ["heldout"], "min_chars": 3})
    evalsets = json.dumps([heldout.to_dict()])
    out = tmp_path / "one" / "web.jsonl"
    main(["--kind", "cpt", "--input", str(raw), "--out", str(out), "--settings", settings, "--evalsets", evalsets])
    stats = json.loads((out.parent / "web.stats.json").read_text())
    assert stats["rejected"] == {"contaminated:heldout": 2, "too_short": 1}
    assert stats["duplicates"]["exact"] == 1 and stats["kept"] == 2
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + sum(stats["duplicates"].values())
    rejects = read_jsonl(out.parent / "web.rejects.jsonl")
    item_id = read_items(heldout)[0]["id"]
    assert [(r["line"], r["reason"], r.get("eval_items")) for r in rejects] == [
        (2, "contaminated:heldout", [item_id]), (4, "too_short", None), (5, "contaminated:heldout", [item_id])]
    assert [r["text"] for r in read_jsonl(out)] == ["A clean training document about boats.",
                                                    "the quick brown fox jumps over the lazy dog while seven wise"]

    # the workflow's form (map jobs, then the gather) writes the same files
    shards = [tmp_path / "shards" / f"web.{i}-of-2.jsonl" for i in range(2)]
    for i, shard in enumerate(shards):
        main(["shard", "--kind", "cpt", "--input", str(raw), "--dataset", "web", "--shard", str(i), "--shards", "2",
              "--out", str(shard), "--settings", settings, "--evalsets", evalsets, "--workers", "2"])
    gathered = tmp_path / "gathered" / "web.jsonl"
    main(["gather", "--kind", "cpt", "--shard-files", *map(str, shards), "--out", str(gathered),
          "--settings", settings])
    for name in ("web.jsonl", "web.rejects.jsonl", "web.stats.json"):
        assert (gathered.parent / name).read_bytes() == (out.parent / name).read_bytes()


def test_decontaminate_needs_the_sets_definitions(raw, heldout, tmp_path):
    out = str(tmp_path / "web.jsonl")
    with pytest.raises(ConfigError, match="decontaminate lists 'heldout', which --evalsets does not define"):
        main(["--kind", "cpt", "--input", str(raw), "--out", out, "--settings", '{"decontaminate": ["heldout"]}'])
    lm_eval = EvalSet.from_dict("arc", {"kind": "lm_eval", "task": "arc_easy"})
    with pytest.raises(ConfigError, match="'arc', an lm_eval set"):
        main(["--kind", "cpt", "--input", str(raw), "--out", out, "--settings", '{"decontaminate": ["arc"]}',
              "--evalsets", json.dumps([lm_eval.to_dict()])])
    with pytest.raises(ConfigError, match="decontaminate_ngram"):
        main(["--kind", "cpt", "--input", str(raw), "--out", out, "--settings", '{"decontaminate_ngram": 0}'])


# ---------------------------------------------------------------- the report
def test_report_counts_are_brute_force_counts(tmp_path):
    rng = random.Random(7)
    sets = generated_sets(rng)
    evalsets = []
    for name, kind in (("docs", "perplexity"), ("mc", "multiple_choice"), ("chat", "generation")):
        data = tmp_path / f"{name}.jsonl"
        lines = [{"id": item["id"], **({"messages": item["messages"] + [{"role": "assistant",
                                                                          "content": item["reference"]}]}
                                       if kind == "generation" else {k: v for k, v in item.items() if k != "id"})}
                 for item in sets[name]]
        data.write_text("".join(json.dumps(line) + "\n" for line in lines))
        evalsets.append(EvalSet.from_dict(name, {"kind": kind, "data": str(data)}))
    cpt = [phrase(rng, 0, 60) for _ in range(150)]
    sft = [[phrase(rng, 1, 20) for _ in range(2)] for _ in range(150)]
    (tmp_path / "cpt.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in cpt))
    sft_raw = tmp_path / "sft_raw"
    sft_raw.mkdir()
    for part in range(2):
        (sft_raw / f"part{part}.jsonl.gz").write_bytes(gzip.compress("".join(
            json.dumps({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}) + "\n"
            for u, a in sft[part * 75:(part + 1) * 75]).encode()))
    out = tmp_path / "reports" / "contamination.json"
    main(["contamination", "--datasets", f"cpt:web={tmp_path / 'cpt.jsonl'}", f"sft:chat={sft_raw}",
          "--evalsets", json.dumps([s.to_dict() for s in evalsets]), "--ngram", "4", "--min-words", "1",
          "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["ngram"] == 4
    assert {name: s["items"] for name, s in report["sets"].items()} == {"docs": 40, "mc": 40, "chat": 40}
    items = {s.name: read_items(s) for s in evalsets}
    cpt_names = [f"cpt.jsonl:{line}" for line in range(1, 151)]
    sft_names = [f"part{part}.jsonl.gz:{line}" for part in range(2) for line in range(1, 76)]
    for dataset, records, names in (("web", [[t] for t in cpt], cpt_names), ("chat", sft, sft_names)):
        expected = brute_force(items, records, 4)
        for name in items:
            pair = next(p for p in report["pairs"] if p["dataset"] == dataset and p["set"] == name)
            hit = [n for n, hits in zip(names, expected) if name in hits]
            hit_items = set().union(*(hits.get(name, set()) for hits in expected))
            assert pair["records_scanned"] == 150
            assert (pair["records_hit"], pair["eval_items_hit"]) == (len(hit), len(hit_items))
            assert pair["example_records"] == hit[:5]
            assert set(pair["example_item_ids"]) <= hit_items
            assert len(pair["example_item_ids"]) == min(5, len(hit_items))
            assert pair["records_hit"] > 0
