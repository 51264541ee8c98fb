"""The attention encoder-decoder: encoder.py → decoder.py (bridge, attention.py, input feeding) → seq2seq.py."""
from seq2seq.model.seq2seq import Seq2Seq, build_model

__all__ = ["Seq2Seq", "build_model"]
