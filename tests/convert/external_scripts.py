"""Converter scripts of a user's own, for the tests of the external `command` (unit and workflow tests)."""
from __future__ import annotations

# A user's own exporter: loads the Megatron checkpoint with megatron-core and writes the HF model with
# save_pretrained (weights, config.json, generation_config.json), but no tokenizer files.
EXPORT_SCRIPT = '''
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from llmrunner.megatron import checkpoint, parallel
from llmrunner.megatron.model import ModelShape, build_gpt_model
from llmrunner.megatron.hf_mapping import hf_config_kwargs, megatron_to_hf

mg, iteration, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
shape = ModelShape.load(mg)
parallel.init_distributed()
model = build_gpt_model(shape)
checkpoint.load_checkpoint(mg, model, iteration=iteration)
state = megatron_to_hf({k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}, shape)
hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(shape.architecture, **hf_config_kwargs(shape)))
hf.load_state_dict(state, strict=False)
hf.save_pretrained(out)
print(f"exported iteration {iteration} of {mg} to {out}")
'''

# A user's own importer: HF safetensors -> megatron-core GPTModel -> Megatron checkpoint at iteration 0.
IMPORT_SCRIPT = '''
import sys
from pathlib import Path

from llmrunner.convert.core import read_hf_folder
from llmrunner.megatron import checkpoint, parallel
from llmrunner.megatron.hf_mapping import hf_to_megatron
from llmrunner.megatron.model import build_gpt_model


def main(hf, out):
    shape, state = read_hf_folder(hf)
    parallel.init_distributed()
    model = build_gpt_model(shape)
    model.load_state_dict(hf_to_megatron(state, shape), strict=True)
    checkpoint.save_checkpoint(out, 0, shape, model)


if __name__ == "__main__":  # the checkpoint writer starts worker processes that import this module
    main(Path(sys.argv[1]), Path(sys.argv[2]))
'''
