"""Performance benchmark (``make bench``): raw ONNX Runtime, the service over HTTP, start-up.

Figures are printed as a table and appended to ``bench-results/history.jsonl``; nothing here
asserts a threshold (targets are read off the numbers, see the README).
"""
