"""The DICOM door: a pynetdicom receiver that writes into the spool (``python -m receiver``).

Its modules, from the process down to the wire, along pynetdicom's own layers:

* :mod:`receiver.app`: the service: builds the AE, recovers the spool, runs the server;
* :mod:`receiver.handlers`: the event handlers (association checks, C-STORE into the
  spool, C-ECHO) and :mod:`receiver.contexts`, the presentation contexts accepted;
* :mod:`receiver.negotiation`: presentation context negotiation that keeps a sender's
  compressed data as it was sent (replaces pynetdicom's for an acceptor);
* :mod:`receiver.server`: accepting connections (pynetdicom's ``AssociationServer`` and
  ``RequestHandler``);
* :mod:`receiver.association`: an association's own thread (pynetdicom's ``Association``);
* :mod:`receiver.dul`: an association's reactor thread (pynetdicom's ``DULServiceProvider``);
* :mod:`receiver.dimse`: DIMSE messages (pynetdicom's ``DIMSEServiceProvider``);
* :mod:`receiver.transport`: an association's socket and receive buffers (pynetdicom's
  ``AssociationSocket``);
* :mod:`receiver.encoding`: the file meta and C-STORE requests and responses on the wire;
* :mod:`receiver.incoming`: the file a C-STORE data set streams into;
* :mod:`receiver.overrides`: the upgrade checklist of everything taken from pynetdicom
  beyond its documented API, and the release gate.
"""
