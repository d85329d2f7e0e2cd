"""The float precision a runtime may be told to compute in (``--precision-hint``).

A file's declared precision is the contract: float work runs in f32 unless the user asks
otherwise. "auto" is the runtime's own default for this CPU (OpenVINO picks bf16 on Xeons with
AMX/AVX512_BF16 and f16 on some ARM cores), which an app that keeps that default will get.
Standard library only: the CLI builds its parser from this before importing numpy.
"""
PRECISION_HINTS = ("f32", "bf16", "f16", "auto")
DEFAULT_PRECISION_HINT = "f32"
