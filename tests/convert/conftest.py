"""Tiny HF Qwen3 folders (tied and untied) converted to Megatron and back, once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.megatron.fixtures import build_hf_model, run_stage

_cache: dict[str, dict] = {}


def _convert(variant: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if variant not in _cache:
        root = tmp_path_factory.mktemp(f"convert_{variant}")
        hf = build_hf_model(root / "hf", tied=variant == "tied")
        run_stage("convert", "hf2mg", "--hf", hf, "--out", root / "mg", settings={})
        run_stage("convert", "mg2hf", "--mg", root / "mg", "--hf-side", hf, "--out", root / "back",
                  settings={"parity_tolerance": 1e-5})
        _cache[variant] = {"hf": hf, "mg": root / "mg", "back": root / "back", "tied": variant == "tied"}
    return _cache[variant]


@pytest.fixture(scope="session", params=["tied", "untied"])
def converted(request, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"hf": source folder, "mg": hf2mg output, "back": mg2hf output, "tied": bool}."""
    return _convert(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def converted_tied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tied variant alone, for tests that need one conversion."""
    return _convert("tied", tmp_path_factory)
