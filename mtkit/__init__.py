"""mtkit: train, compare and understand RNN encoder-decoder translation models."""

__version__ = "0.1.0"
