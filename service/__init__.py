"""lungseg: lung and COVID-19 infection segmentation for chest X-ray and CT.

Research software, not a medical device. The plain-Python core (``service.imaging``,
``service.pipeline``, ``service.models``, ``service.benchmark``) never imports FastAPI;
``service.api`` wires it to HTTP.
"""

__version__ = "0.1.0"

NOT_A_MEDICAL_DEVICE = (
    "lungseg is research software, not a medical device: its output must not be used "
    "for diagnosis or treatment decisions."
)
