"""Tiny HF folders of every supported layout converted to Megatron and back, once per session."""
from __future__ import annotations

import pytest

from tests.megatron.fixtures import LLAMA3_ROPE, build_hf_model, run_stage

# name: (architecture, tied embeddings, rope parameters or None for plain RoPE)
VARIANTS = {
    "qwen3-tied": ("qwen3", True, None),
    "qwen3-untied": ("qwen3", False, None),
    "qwen2-tied": ("qwen2", True, None),
    "llama3-untied": ("llama", False, LLAMA3_ROPE),
}
_cache: dict[str, dict] = {}


def _convert(variant: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if variant not in _cache:
        architecture, tied, rope = VARIANTS[variant]
        root = tmp_path_factory.mktemp(f"convert_{variant}")
        hf = build_hf_model(root / "hf", architecture, tied=tied, rope=rope)
        run_stage("convert", "hf2mg", "--hf", hf, "--out", root / "mg", settings={})
        run_stage("convert", "mg2hf", "--mg", root / "mg", "--hf-side", hf, "--out", root / "back",
                  settings={"parity_tolerance": 1e-5})
        _cache[variant] = {"hf": hf, "mg": root / "mg", "back": root / "back", "architecture": architecture,
                           "tied": tied}
    return _cache[variant]


@pytest.fixture(scope="session", params=list(VARIANTS))
def converted(request, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{"hf": source folder, "mg": hf2mg output, "back": mg2hf output, "architecture": str, "tied": bool}."""
    return _convert(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def converted_tied(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tied Qwen3 variant alone, for tests that need one conversion."""
    return _convert("qwen3-tied", tmp_path_factory)
