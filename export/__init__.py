"""ONNX export of trained runs and the model cards the service loads (needs the ``train`` extra)."""
