"""eval: score an HF model folder with lm-evaluation-harness on local tasks (held-out perplexity, multiple choice)."""
