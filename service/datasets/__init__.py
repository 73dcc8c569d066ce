"""Readers of labelled sets, as they are published.

Two layouts are read, with no conversion step:

* ours (``../shared/data/<set>``)::

      images/<id>.png|.jpg   masks/lung/<id>.png   masks/infection/<id>.png   meta.csv

  ``meta.csv`` columns: ``id,image,group,finding,covid,modality,source,license``.

* COVID-QU-Ex "Infection Segmentation Data"::

      [<Train|Val|Test>/]<COVID-19|Non-COVID|Normal>/{images,lung masks,infection masks}/<file>

  It has no patient ids: each image is its own group and the official split is kept.

Training, export and the benchmark all read sets through this package.
"""

from service.datasets.labelled import LabelledSet, Sample
from service.datasets.read import load_image, load_mask, read_set

__all__ = ["LabelledSet", "Sample", "load_image", "load_mask", "read_set"]
