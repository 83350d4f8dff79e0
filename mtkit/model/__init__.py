"""Encoder-decoder models in tensors: no files, no tokenizer, no config outside build_model."""

from mtkit.model.decoder import DecoderState, Memory, StepOutput, select, unroll_steps
from mtkit.model.encoder import EncoderOutput
from mtkit.model.seq2seq import Seq2Seq, attention_label, build_model, describe

__all__ = ["build_model", "Seq2Seq", "describe", "attention_label", "DecoderState", "Memory", "EncoderOutput",
           "StepOutput", "select", "unroll_steps"]
