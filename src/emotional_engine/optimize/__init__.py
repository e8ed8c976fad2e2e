"""The model optimisation pipeline: prune, heal, distil, quantise a llama GGUF (pipeline.py)."""
