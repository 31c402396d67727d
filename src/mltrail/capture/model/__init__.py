"""Model files: tensor fingerprints, weight deltas, safetensors, adapters."""
