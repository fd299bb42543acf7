"""Batches of received instances on disk, their states and the problem area.

Import from the modules: :mod:`~dicomflow.spool.store` (the spool, its batches),
:mod:`~dicomflow.spool.records` (typed records, light to import), :mod:`~dicomflow.spool.durable`
(crash-safe file operations).
"""
