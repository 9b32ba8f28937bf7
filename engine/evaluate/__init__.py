"""Evaluation: perplexity of HF models and GGUFs, forgetting checks, quant sweeps."""
