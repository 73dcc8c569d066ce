"""Reports of benchmark runs: the numbers (``tables``, plain Python, also used by the service's
dashboard), how an image is shown (``display``) and, with the ``report`` extra, the static HTML
report with matplotlib plots and an overlay gallery (``python -m report``).

Only ``plots``, ``gallery`` and ``cli`` import matplotlib; the service imports ``tables`` and
``display`` alone.
"""
