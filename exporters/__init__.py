"""Converters from PyTorch to deployment formats, one module per target.

``edgebase.capabilities`` is the table of targets; each converter is a function named by
its edge (``torch_to_onnx``, ``torch_to_tflite``, ``torch_to_openvino``) that writes the
model file(s) to a given path and returns a ``Conversion``.
"""
from exporters.common import Conversion

__all__ = ["Conversion"]
