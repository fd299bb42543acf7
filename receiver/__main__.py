"""``python -m receiver``: run the DICOM receiver with the platform settings."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from dicomflow.config import ConfigError, load_settings
from receiver.app import Receiver, freeze_startup_objects, use_spool_for_temporary_files


def main() -> int:
    """Load the settings, run the receiver until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pynetdicom logs every PDU at INFO; the receiver writes one line per association.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    receiver = Receiver.from_settings(settings)
    use_spool_for_temporary_files(receiver.spool)

    def stop(signum: int, frame: FrameType | None) -> None:
        receiver.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    receiver.start()
    freeze_startup_objects()
    receiver.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
