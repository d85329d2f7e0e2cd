"""Importers of non-PyTorch weight files into zoo architectures, one module per source format
and family. Importing this package registers them with ``zoo.weights``."""
from zoo.importers import tflite_mobilenet_v1  # noqa: F401  (registers itself)
from zoo.importers import caffe_deep_compression  # noqa: F401  (registers itself)
