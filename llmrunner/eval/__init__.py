"""eval: score an HF model folder on the registered eval sets (config/evalsets/) with lm-evaluation-harness."""
