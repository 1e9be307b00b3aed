"""The experiment report: tables from fake stage outputs, a PNG, and no crash on missing stages."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.report.__main__ import main


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def report(root: Path) -> str:
    out = root / "reports" / "report.md"
    main(["experiment", "--root", str(root), "--out", str(out)])
    return out.read_text()


def test_full_experiment(datapool: Path) -> None:
    root = datapool / "experiments" / "demo"
    text = report(root)
    assert text.startswith("# Experiment report: demo\n")
    assert "| cpt | web | 1,000 | 950 | 30 | 15 | 5 | 2.0% | 0 | too_short: 30 |" in text
    assert "| cpt | books | 10 | 7 | 0 | 2 | 1 | 30.0% | 0 | — |" in text
    assert "| cpt | total | 1,010 | 957 | 30 | 17 | 6 | 2.3% | 0 | too_short: 30 |" in text
    assert "- cpt `books`: 2 exact and 1 near duplicates of records kept in `web`" in text
    # stats written before near de-dup and augmentation existed: those cells stay empty
    assert "| sft | chat | 120 | 110 | 8 | 2 | — | 1.7% | — | empty: 2, no_assistant: 6 |" in text
    assert "| characters | books | web |" in text
    assert "| 128–255 | 0 | 600 ████████████████████ |" in text
    assert "| 256–511 | 7 ████████████████████ | 150 █████ |" in text
    assert "| mean | 300 | 180.5 |" in text
    assert "| web | 950 | 1,234,567 | 0 |" in text
    assert "| chat | 110 | 40,000 | 10,000 | 25.0% | 3 | 0 |" in text
    # 40 steps, loss 9 * (0.6 + 0.4 / it); the half-written last line is skipped
    assert "| cpt | 40 | 40 | 5.49 | 5.49 | 5.59 | 0.0003 | 5,020.5 |" in text
    assert "| hf2mg | model/mg/base | 3.1e-06 | 1e-05 | yes | float32 |" in text
    assert "| mg2hf | model/hf/sft |" in text
    assert "| task | metric | base | cpt | sft |" in text
    assert "| heldout_ppl | bits_per_byte ↓ | 4 | 3 | 2.5 |" in text
    assert "| wordnet_mc | acc ↑ | 0.24 ± 0.019 | 0.27 ± 0.019 | 0.31 ± 0.019 |" in text
    assert "| wordnet_mc | samples | 500 of 500 | 500 of 500 | 500 of 500 |" in text
    assert "![Training loss](loss.png)" in text
    width, height = png_size(root / "reports" / "loss.png")
    assert width > 500 and height > 200


def test_cpt_off(datapool: Path) -> None:
    text = report(datapool / "experiments" / "cpt_off")
    assert "CPT: stage off." in text
    assert "| cpt | stage off | — |" in text
    assert "| heldout_ppl | bits_per_byte ↓ | 4 | stage off | 2.5 |" in text
    assert "| mg2hf | model/hf/cpt |" not in text


def test_empty_experiment_still_reports(tmp_path: Path) -> None:
    root = tmp_path / "experiments" / "fresh"
    root.mkdir(parents=True)
    text = report(root)
    for section in ("Data cleaning", "Tokenization", "Training", "Conversion parity", "Evaluation"):
        assert f"## {section}" in text
    assert text.count("stage off") >= 6
    assert png_size(root / "reports" / "loss.png")[0] > 0


def test_missing_root_is_a_stage_error(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="does not exist"):
        main(["experiment", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "r.md")])
