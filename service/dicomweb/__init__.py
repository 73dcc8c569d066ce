"""A DICOMweb client (QIDO-RS, WADO-RS, STOW-RS) for pulling series from and pushing results
to a PACS; its settings are passed in (:class:`DicomwebConfig`), never read from globals."""

from service.dicomweb.client import DicomwebClient, SeriesInfo, StoreReceipt
from service.dicomweb.config import DicomwebConfig

__all__ = ["DicomwebClient", "DicomwebConfig", "SeriesInfo", "StoreReceipt"]
