"""The behavioural tokenizer (SPEC 8-9): cleaning of the feature matrix, family encoders, category
discovery, the categorical hierarchical VQ-VAE, its metrics and checkpoints.

    from spinlock_core.tokenizer import Tokenizer, train_tokenizer
    tok, metrics = train_tokenizer("dataset.h5", load_tokenizer_config("configs/vqvae/demo.yaml"), "ckpt/")
    tokens = Tokenizer.load("ckpt/").tokenize("other.h5")   # [N, 3 * categories] int64
"""

from .api import Tokenizer
from .train import train_tokenizer

__all__ = ["Tokenizer", "train_tokenizer"]
