"""Intake: the one path by which instances enter the platform, whatever the door.

Every door (the DIMSE receiver in ``receiver/``, the STOW-RS route in :mod:`dicomflow.web.stow`,
the file and upload importers in :mod:`dicomflow.importer`) does the same three things:

1. asks :class:`~dicomflow.intake.admission.Admission` whether the project and dataset are
   acceptable (it works from the last known project list while the database is away);
2. opens an :class:`~dicomflow.intake.session.IntakeSession` and stores each instance through
   it: :mod:`~dicomflow.intake.checks` reads and checks the header, the spool makes the file
   durable in a batch or keeps it in the problem area with its reason;
3. closes the session: its last batch joins the spool's outbox.

From the outbox the dispatcher (:mod:`dicomflow.pipeline.dispatcher`) hands each batch to
Airflow. Nothing here talks to Airflow, the PACS, the index or the object store, so a door
keeps taking data while any of them is away.
"""
