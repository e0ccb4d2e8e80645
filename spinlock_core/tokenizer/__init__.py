"""The behavioural tokenizer (SPEC 8-9): cleaning of the feature matrix, category discovery, the
categorical hierarchical VQ-VAE, its metrics and checkpoints."""
