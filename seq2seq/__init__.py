"""RNN attention sequence-to-sequence translation: training, decoding, evaluation."""

__version__ = "0.1.0"
