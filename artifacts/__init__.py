"""The artifacts set shipped with onnxdigits: ONNX files, manifest, references and sample."""
