"""Custom adapters: a user's function named in the config, its rejects, and clear errors when the
file or the function is not there."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrunner.errors import ConfigError, StageError
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.core import map_and_gather
from llmrunner.udatasets.custom import custom_adapter
from llmrunner.udatasets.shard import RecordRules
from tests.paths import REPO

EXAMPLE = "docs/examples/udatasets_adapter.py:best_answer"


def forum(question: object, answers: object) -> str:
    return json.dumps({"question": question, "answers": answers, "site": "s"})


def test_shipped_example_adapter_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # adapter_function paths are relative to the repository root
    raw = tmp_path / "raw"
    raw.mkdir()
    q = {"title": "Sum?", "body": "1 + 2"}
    (raw / "f.jsonl").write_text("\n".join([
        forum(q, [{"text": "4", "score": 0}, {"text": "3", "score": 5}]),  # 1 kept: the best answer
        forum("not an object", []),                                         # 2 custom: no_question
        forum(q, []),                                                       # 3 custom_rejected
        forum({"body": " "}, [{"text": " "}]),                             # 4 empty (validated after)
        "[1]",                                                              # 5 not_an_object
    ]) + "\n")
    out = tmp_path / "processed" / "sft" / "forum.jsonl"
    main(["--kind", "sft", "--input", str(raw), "--out", str(out),
          "--settings", json.dumps({"adapter": "custom", "adapter_function": EXAMPLE})])
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"messages": [{"role": "user", "content": "Sum?\n\n1 + 2"}, {"role": "assistant", "content": "3"}],
         "site": "s"}]
    stats = json.loads(out.with_name("forum.stats.json").read_text())
    assert stats["rejected"] == {"custom: no_question": 1, "custom_rejected": 1, "empty": 1, "not_an_object": 1}
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + stats["duplicates"]["exact"] == 5


def write_adapter(tmp_path: Path, body: str) -> str:
    path = tmp_path / "adapters.py"
    path.write_text(body)
    return str(path)


def test_custom_cpt_adapter_result_is_validated_as_cpt(tmp_path):
    path = write_adapter(tmp_path, "def title(record):\n    return {'text': record.get('title'), 'id': 1}\n")
    raw = tmp_path / "d.jsonl"
    raw.write_text('{"title": "A doc."}\n{"name": "x"}\n')
    stats = map_and_gather([raw], tmp_path / "o.jsonl", RecordRules(custom_adapter(f"{path}:title", "cpt")))
    assert stats["kept"] == 1 and stats["rejected"] == {"text_not_a_string": 1}
    assert json.loads((tmp_path / "o.jsonl").read_text()) == {"text": "A doc.", "id": 1}


def test_a_bug_in_the_function_stops_the_step_naming_it(tmp_path):
    path = write_adapter(tmp_path, "def f(record):\n    return {'text': record['body']}\n")
    adapt = custom_adapter(f"{path}:f", "cpt")
    assert adapt({"body": "x"}) == ({"text": "x"}, None)
    with pytest.raises(StageError, match=r"adapters.py:f raised KeyError: 'body'.*ValueError\(reason\)"):
        adapt({})
    assert custom_adapter(write_adapter(tmp_path, "def f(record):\n    return 'x'\n") + ":f", "cpt")({}) == (
        None, "custom_result_not_an_object")


@pytest.mark.parametrize("spec, message", [
    ("missing/adapters.py:f", r"data\.sft\.forum\.adapter_function in pipeline\.yaml: 'missing/adapters.py:f': "
                              r"the file missing/adapters.py does not exist; set it to 'path/to/file.py:function'"),
    ("{path}:nope", r"data\.sft\.forum\.adapter_function .* defines no function 'nope' \(it defines: helper\); "
                    r"set it to"),
    ("{path}", r"key 'adapter_function': '.*adapters.py' does not match .* 'path/to/file.py:function'"),
])
def test_missing_file_or_function_is_a_config_error_naming_key_and_fix(tmp_path, spec, message):
    path = write_adapter(tmp_path, "def helper(record):\n    return None\n")
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"a": 1}\n')
    settings = {"adapter": "custom", "adapter_function": spec.format(path=path)}
    with pytest.raises(ConfigError, match=message):
        main(["--kind", "sft", "--input", str(raw), "--out", str(tmp_path / "forum.jsonl"),
              "--settings", json.dumps(settings)])


def test_adapter_function_only_with_the_custom_adapter():
    from llmrunner.udatasets.settings import UdatasetsSettings

    with pytest.raises(ConfigError, match="adapter_function: give it exactly when adapter is 'custom'"):
        UdatasetsSettings.from_dict({"adapter": "custom"})
    with pytest.raises(ConfigError, match="adapter_function: give it exactly when adapter is 'custom'"):
        UdatasetsSettings.from_dict({"adapter": "text", "adapter_function": EXAMPLE})
