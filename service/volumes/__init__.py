"""Volume jobs (issues 14 and 15): a CT series or NIfTI uploaded, or pulled from the PACS by
DICOMweb, segmented in the background, its masks, DICOM SEG, FHIR Bundle and display slices
kept in the job store, the SEG optionally stored back in the PACS.

``service.volumes.jobs.VolumeJobs`` is the runner (the routers' one entry point);
``document`` the params and result JSON; ``artifacts`` the files; ``pacs`` the DICOMweb calls.
It sits above the encoders, the DICOMweb client and the stores in the layers, and below
``service.api``.
"""
