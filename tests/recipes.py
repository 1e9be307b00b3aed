"""The real-model recipes shipped in config/experiments/ and stand-ins for the model folders they name."""
from __future__ import annotations

from pathlib import Path

from llmrunner.prepare.real_shapes import write_shape_folder

# recipe -> (model folder under $LLMRUNNER_MODELS, the real shape it is)
RECIPES = {"qwen3-0.6b_nvidia_full": ("Qwen3-0.6B-Base", "qwen3-0.6b-base"),
           "qwen3-4b_nvidia_full": ("Qwen3-4B-Base", "qwen3-4b-base")}


def write_recipe_models(root: Path) -> Path:
    """$LLMRUNNER_MODELS for the recipes: each model's folder with its real config.json and tokenizer files, no
    weights (what a dry run and the config checks read)."""
    for folder, shape in RECIPES.values():
        write_shape_folder(shape, root / folder, weights=False)
    return root
