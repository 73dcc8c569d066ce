"""Training of the lung/infection segmentation networks (needs the ``train`` extra: torch).

Nothing under ``service/`` imports this package; training imports the service's pipeline so the
models learn on exactly what the service feeds them.
"""
