"""Recording runs: one lifecycle for the wrapper, the API and hooks; datasets, stages, sources."""
