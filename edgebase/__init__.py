"""The base floor of edgedeploy: what every other package may import, importing none of them.

Errors, the Artifact/manifest schema, atomic file writes, release-bundle reading, image
decoding and preprocessing, the TFLite metadata format, the capability table of export
targets and the command-line frame. numpy and the standard library only (Pillow and
flatbuffers are imported where an image or a metadata block is read).
"""

__version__ = "0.1.0"
