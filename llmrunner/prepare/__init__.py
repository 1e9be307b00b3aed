"""prepare: the base model (copied, or built for the demo) and the raw data, into the datapool."""
