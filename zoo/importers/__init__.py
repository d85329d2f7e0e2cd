"""Importers of non-PyTorch weight files into zoo architectures (one module per source format and family)."""
