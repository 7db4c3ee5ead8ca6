"""models: the network side — networks, quantizers, bit-flip faults, training, evaluation.

To this package a bit error rate is just a number; it never imports hwsim.
"""
from .checkpoint import build_model, load_checkpoint, method_name
from .data import load_dataset
from .errors import ConfigError
from .evaluate import accuracy, evaluate_under_bit_errors, StoredWeights
from .networks import NETWORKS, create_model, input_shape
from .quant import QUANTIZERS, create_quantizer, quantize_model, quant_layers

__all__ = ["ConfigError", "NETWORKS", "QUANTIZERS", "StoredWeights", "accuracy", "build_model",
           "create_model", "create_quantizer", "evaluate_under_bit_errors", "input_shape",
           "load_checkpoint", "load_dataset", "method_name", "quant_layers", "quantize_model"]
