"""prepare: the built-in demo base model (deterministic, Qwen3-Base conventions), copies of a model
folder and of raw data files, and the errors a user sees."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from llmrunner.cli import run_main
from llmrunner.errors import StageError
from llmrunner.prepare.__main__ import main
from llmrunner.prepare.core import copy_base_model, copy_raw_data, prepare_base_model
from llmrunner.prepare.tiny_model import DEMO_CORPUS
from tests.files import run_unable_to_read
from tests.paths import REPO


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def builtin_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "tiny-qwen3"
    prepare_base_model("builtin:tiny-qwen3", out)
    return out


def test_demo_corpus_is_in_the_repository():
    assert [str(path) for path in DEMO_CORPUS] == [f"resources/demo/cpt/{source}.jsonl.gz"
                                                   for source in ("python-docs", "jargon-text", "wordnet")]
    assert all((REPO / path).is_file() for path in DEMO_CORPUS)


def test_builtin_model_is_byte_identical_when_built_again(builtin_model, tmp_path):
    again = tmp_path / "again"
    prepare_base_model("builtin:tiny-qwen3", again)
    first = digests(builtin_model)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(first)
    assert digests(again) == first


def test_builtin_tokenizer_follows_qwen3_base_conventions(builtin_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(builtin_model, local_files_only=True)
    assert len(tok) == 8192
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    text = "def f(x):\n    return x  # Ünïcode ok"
    assert tok.decode(tok(text)["input_ids"]) == text

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."}]
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    targets = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(targets) == "Hello.<|im_end|>"
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_builtin_model_shape(builtin_model):
    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((builtin_model / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["vocab_size"] == 8192
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (128, 384, 4)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (4, 2, 32)
    assert config["tie_word_embeddings"] is True and config["eos_token_id"] == config["pad_token_id"] == 0
    model = AutoModelForCausalLM.from_pretrained(builtin_model, local_files_only=True)
    assert model.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_unknown_builtin_lists_the_known_ones(tmp_path):
    with pytest.raises(StageError, match="builtin:tiny-qwen3"):
        prepare_base_model("builtin:huge", tmp_path / "out")


def make_hf_folder(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"duplicate weights")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs")
    (folder / "original").mkdir()
    return folder


def test_copy_base_model_copies_safetensors_config_and_tokenizer(tmp_path):
    src = make_hf_folder(tmp_path / "src")
    copy_base_model(src, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert (tmp_path / "out/model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_copy_base_model_missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(StageError, match=r"(?s)nowhere.*huggingface-cli download.*builtin:tiny-qwen3"):
        prepare_base_model(str(tmp_path / "nowhere"), tmp_path / "out")


def test_copy_base_model_names_every_missing_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(StageError) as err:
        copy_base_model(src, tmp_path / "out")
    message = str(err.value)
    assert "no config.json" in message and "no *.safetensors" in message and "no tokenizer files" in message
    assert "pytorch_model.bin" in message


def test_copy_raw_data_keeps_names(tmp_path):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "sub" / "b.jsonl.gz"
    b.parent.mkdir()
    a.write_text('{"text": "x"}\n')
    b.write_bytes(b"gz bytes")
    copy_raw_data([a, b], tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["a.jsonl", "b.jsonl.gz"]
    assert (tmp_path / "raw/b.jsonl.gz").read_bytes() == b"gz bytes"


def test_copy_raw_data_reports_every_problem_at_once(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x/a.jsonl").write_text("")
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "notes.md").write_text("")
    os.mkfifo(tmp_path / "pipe.jsonl")  # copying it would wait forever for a writer
    with pytest.raises(StageError) as err:
        copy_raw_data([tmp_path / "a.jsonl", tmp_path / "x/a.jsonl", tmp_path / "notes.md",
                       tmp_path / "gone.jsonl", tmp_path / "pipe.jsonl", tmp_path / "x"], tmp_path / "raw")
    message = str(err.value)
    assert "same file name" in message and "notes.md is not a data file" in message
    assert "gone.jsonl does not exist" in message
    assert "pipe.jsonl is a FIFO, not a regular file; give a file" in message
    assert f"{tmp_path / 'x'} is a folder, not a regular file" in message
    assert not (tmp_path / "raw").exists()


def test_cli_raw_data_and_error_exit(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    main(["raw-data", "--sources", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "raw")])
    assert (tmp_path / "raw/a.jsonl").is_file()
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["base-model", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 1
    assert "missing" in capsys.readouterr().err


def test_sources_outside_the_repository_are_read_there_and_logged(tmp_path, monkeypatch, caplog):
    shared = tmp_path / "shared" / "corpus.jsonl"  # raw corpora on shared storage
    shared.parent.mkdir()
    shared.write_text('{"text": "far"}\n')
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data/near.jsonl").write_text('{"text": "near"}\n')
    (repo / "data/link.jsonl").symlink_to(shared)
    monkeypatch.chdir(repo)
    with caplog.at_level(logging.INFO, logger="llmrunner.prepare.core"):
        copy_raw_data([Path("data/near.jsonl"), Path("data/link.jsonl")], repo / "raw")
    assert (repo / "raw/link.jsonl").read_text() == '{"text": "far"}\n' and not (repo / "raw/link.jsonl").is_symlink()
    outside = [r.getMessage() for r in caplog.records if "outside the repository" in r.getMessage()]
    assert outside == [f"source data/link.jsonl is outside the repository {repo}: reading {shared} "
                       "(a moved checkout still reads it there)"]


def test_cli_names_an_unreadable_source(tmp_path):
    src = tmp_path / "locked.jsonl"
    src.write_text('{"text": "x"}\n')
    result = run_unable_to_read(["-m", "llmrunner.prepare", "raw-data", "--sources", str(src),
                                 "--out", str(tmp_path / "raw")], src)
    assert result.returncode == 1, result.stderr
    assert f"{src}: permission denied; make it readable by the user running the workflow" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "raw").exists()
