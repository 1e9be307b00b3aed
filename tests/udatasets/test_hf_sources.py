"""Hugging Face datasets as sources: a save_to_disk folder and a Hub name from a datasets cache built here (offline)
go through prepare and udatasets with the records, rejects and stats of the same rows given as JSON Lines; a bad
`hf:` source stops the config load naming what exists."""
from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
import yaml

from llmrunner.config import load_run_config
from llmrunner.errors import ConfigError, StageError
from llmrunner.prepare.__main__ import main as prepare
from llmrunner.udatasets.__main__ import main as udatasets
from llmrunner.udatasets.hf_sources import HfSource, open_source
from tests.files import read_jsonl, write_jsonl
from tests.hf_cache import write_hub_cache
from tests.paths import write_yaml

ROWS = [
    {"text": "The first document, kept.", "source": "a"},
    {"text": None, "source": "b"},                        # a missing text is rejected
    {"text": "   ", "source": "c"},                       # empty once cleaned
    {"text": "Short", "source": "d"},                     # too_short under min_chars 10
    {"text": "The first document, kept.", "source": "e"},  # an exact duplicate
    {"text": "A second document \x00 cleaned.", "source": "f"},
]
TEST_ROWS = [{"text": "Only in the test split.", "source": "t"}]
SETTINGS = json.dumps({"adapter": "text", "min_chars": 10})


def run_udatasets(raw: Path, out: Path) -> tuple[dict, list[str], list[dict], list[dict]]:
    """udatasets on a raw folder or file, as a user runs it: (stats, kept lines, rejects, duplicates)."""
    udatasets(["--kind", "cpt", "--input", str(raw), "--out", str(out), "--settings", SETTINGS])
    rejects, duplicates = (out.with_name(f"{out.stem}.{part}.jsonl") for part in ("rejects", "duplicates"))
    return (json.loads(out.with_name(f"{out.stem}.stats.json").read_text()), out.read_text().splitlines(),
            read_jsonl(rejects), read_jsonl(duplicates))


def same_as_jsonl(tmp_path: Path, raw: Path, file_name: str) -> None:
    """The raw folder's Arrow file `file_name` gives what the same rows as a .jsonl file give, where the file name
    is the only difference."""
    jsonl = tmp_path / "rows.jsonl"
    write_jsonl(jsonl, ROWS)
    expected = run_udatasets(jsonl, tmp_path / "from_jsonl" / "web.jsonl")
    stats, kept, rejects, duplicates = run_udatasets(raw, tmp_path / "from_hf" / "web.jsonl")
    assert stats["files"] == {file_name: expected[0]["files"]["rows.jsonl"]}
    assert {**stats, "files": None} == {**expected[0], "files": None}
    assert stats["kept"] == 2 and stats["rejected"] == {"text_not_a_string": 1, "empty": 1, "too_short": 1}
    assert kept == expected[1]
    assert rejects == [{**r, "file": file_name} for r in expected[2]]
    assert [r["line"] for r in rejects] == [2, 3, 4]  # the row number in the split
    assert duplicates == [{**d, "file": file_name, "duplicate_of": {**d["duplicate_of"], "file": file_name}}
                          for d in expected[3]]


def test_a_save_to_disk_folder_reads_like_its_rows_as_jsonl(tmp_path):
    folder = tmp_path / "web_hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(TEST_ROWS)}).save_to_disk(str(folder))
    raw = tmp_path / "raw"
    prepare(["raw-data", "--hf", HfSource(str(folder), split="train").to_json(), "--out", str(raw)])
    assert sorted(p.name for p in raw.iterdir()) == ["web_hf.train.arrow"]
    same_as_jsonl(tmp_path, raw, "web_hf.train.arrow")


def test_a_single_dataset_folder_needs_no_split(tmp_path):
    folder = tmp_path / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    opened = open_source(HfSource.from_entry(f"hf:{folder}"))
    assert opened.source.file_name() == "single.arrow" and len(opened.dataset) == len(ROWS)
    assert {Path(f).name for f in opened.files} >= {"state.json", "dataset_info.json"}
    with pytest.raises(ConfigError, match="holds one Dataset, which has no splits; remove split"):
        open_source(HfSource(str(folder), split="train"))


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datasets cache of this process: the Hub dataset `llmrunner-test/web`, configs default and small."""
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    write_hub_cache(cache, "llmrunner-test/web", {"train": ROWS, "test": TEST_ROWS}, ("default", "small"))
    return cache


def test_a_hub_name_reads_from_the_cache_like_its_rows_as_jsonl(tmp_path, hub_cache):
    opened = open_source(HfSource("llmrunner-test/web", split="train", config="small"))
    assert opened.source == HfSource("llmrunner-test/web", "train", "small", revision="0.0.0/abc123")
    assert opened.files == []  # the revision, a parameter of the rule, says when the cache changed
    raw = tmp_path / "raw"
    prepare(["raw-data", "--hf", opened.source.to_json(), "--out", str(raw)])
    same_as_jsonl(tmp_path, raw, "llmrunner-test--web.small.train.arrow")


@pytest.mark.parametrize("source, expected", [
    (HfSource("llmrunner-test/web"), "multiple 'llmrunner-test/web' configurations in the cache: .*; set config "
                                     r"to one of them \(the object form \{hf: llmrunner-test/web, config: \.\.\.\}\)"),
    (HfSource("llmrunner-test/web", config="large"), r"for config 'large' Available configs in the cache: "
                                                     r"\['default', 'small'\]; set config to one of them"),
    (HfSource("llmrunner-test/web", config="small"), "has the splits train, test; choose one: "
                                                     r"\{hf: llmrunner-test/web, split: train\}"),
    (HfSource("llmrunner-test/web", split="validation", config="small"),
     "no split 'validation': .* has the splits train, test; set split to one of them"),
    (HfSource("nobody/nothing"), "not a folder, and not usable from the datasets cache .*: Couldn't find cache for "
                                 "nobody/nothing; download it on a machine with internet .*save_to_disk and give "
                                 "the folder"),
])
def test_a_bad_hub_source_names_what_the_cache_holds(hub_cache, source, expected):
    with pytest.raises(ConfigError, match=expected):
        open_source(source)


def test_bad_hf_sources_stop_the_config_load(project):
    pipeline_file = project / "config/experiments/demo/pipeline.yaml"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(TEST_ROWS)}).save_to_disk("hf/web")
    Path("hf/plain").mkdir()
    pipeline = yaml.safe_load(pipeline_file.read_text())
    cpt = pipeline["data"]["cpt"]
    cpt["python_docs"]["sources"] = ["hf:hf/missing/folder"]
    cpt["jargon"] = {"sources": [{"hf": "hf/web", "split": "validation"}], "adapter": "text"}
    cpt["wordnet"] = {"sources": ["hf:hf/web"], "adapter": "text"}
    cpt["plain"] = {"sources": ["hf:hf/plain", {"hf": "hf/web", "splt": "train"}], "adapter": "text"}
    write_yaml(pipeline_file, pipeline)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    message = str(err.value)
    assert "unknown key 'data.cpt.plain.sources.1.splt' (did you mean 'split'?)" in message
    del cpt["plain"]["sources"][1]
    write_yaml(pipeline_file, pipeline)
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    message = str(err.value)
    key = f"{pipeline_file.relative_to(project)}: data.cpt"
    assert f"{key}.python_docs.sources: hf:hf/missing/folder: no folder hf/missing/folder (paths are relative to " \
           f"{project})" in message
    assert (f"{key}.jargon.sources: hf:hf/web (split validation): no split 'validation': the DatasetDict folder "
            "hf/web has the splits train, test; set split to one of them") in message
    assert (f"{key}.wordnet.sources: hf:hf/web: the DatasetDict folder hf/web has the splits train, test; choose "
            "one: {hf: hf/web, split: train}") in message
    assert f"{key}.plain.sources: hf:hf/plain: the folder hf/plain was not written by save_to_disk" in message


def test_a_good_hf_source_reaches_the_prepare_rule(project):
    pipeline_file = project / "config/experiments/demo/pipeline.yaml"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk("hf/web")
    pipeline = yaml.safe_load(pipeline_file.read_text())
    pipeline["data"]["cpt"]["python_docs"]["sources"] = ["resources/demo/cpt/wordnet.jsonl.gz", "hf:hf/web"]
    write_yaml(pipeline_file, pipeline)
    exp = load_run_config({}).exp("demo")
    inputs = exp.sources("cpt", "python_docs")
    assert inputs[0] == "resources/demo/cpt/wordnet.jsonl.gz" and "hf/web/dataset_dict.json" in inputs
    assert all(not os.path.isabs(path) for path in inputs) and "hf/web/train/state.json" in inputs
    assert exp.prepare_source_args("cpt", "python_docs") == [
        "--sources", "resources/demo/cpt/wordnet.jsonl.gz", "--hf", HfSource("hf/web", split="train").to_json()]


def test_an_hf_source_needs_udatasets_on(project):
    pipeline_file = project / "config/experiments/demo/pipeline.yaml"
    datasets.Dataset.from_list(ROWS).save_to_disk("hf/web")
    pipeline = yaml.safe_load(pipeline_file.read_text())
    pipeline["data"]["cpt"]["python_docs"]["sources"] = ["hf:hf/web"]
    pipeline["steps"]["udatasets"] = False
    write_yaml(pipeline_file, pipeline)
    with pytest.raises(ConfigError, match=r"data.cpt.python_docs.sources: an hf: source becomes an Arrow file, which "
                                          r"only udatasets reads \(tokenize reads JSON Lines\); set steps.udatasets"):
        load_run_config({})


def test_a_damaged_arrow_file_is_named(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "web.train.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(StageError, match=r"web.train.arrow is not a readable Arrow \(datasets\) file \(read 0 rows"):
        run_udatasets(raw, tmp_path / "out" / "web.jsonl")


def test_prepare_stops_when_the_planned_revision_is_gone(hub_cache):
    with pytest.raises(StageError, match="revision 0.0.0/gone is gone from the datasets cache .*run the workflow"):
        open_source(HfSource("llmrunner-test/web", "train", "small", revision="0.0.0/gone"))
