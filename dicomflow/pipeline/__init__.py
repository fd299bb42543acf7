"""The pipeline: from a closed batch in the spool to the PACS, the index and the object store.

* :mod:`~dicomflow.pipeline.dispatcher`: the service that hands each closed batch to Airflow
  (and makes it searchable on arrival);
* :mod:`~dicomflow.pipeline.steps`: the steps of ``service-process-incoming-dcm``, one per
  task, as plain functions of a :class:`~dicomflow.platform.Platform` and a batch id;
* :mod:`~dicomflow.pipeline.batch`: a spooled batch as the steps see it.
"""
