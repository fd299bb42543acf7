"""``python -m tests.multihost.check EXPECTED.json``: run inside a host of the site.

Prints one JSON line: the acknowledged instances the PACS holds and the series that are not
complete (in the PACS, indexed as stored, thumbnail, validation), with what each lacks. The
settings come from the host's environment (the shared services' addresses).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from dicomflow.config import load_settings
from dicomflow.index import open_index
from dicomflow.pacs.client import DicomWebClient
from tests.faults.drill import _document, _lacks, _pacs_instances


def main(path: str) -> int:
    expected = {uid: set(sops) for uid, sops in json.loads(Path(path).read_text()).items()}
    settings = load_settings(create_secrets=False)
    in_pacs: set[str] = set()
    incomplete: dict[str, str] = {}
    index = open_index(settings)
    try:
        with DicomWebClient.from_settings(settings) as pacs:
            for uid, sops in expected.items():
                held = _pacs_instances(pacs, uid)
                in_pacs |= held & sops
                lack = _lacks(_document(index, uid), sops, held)
                if lack:
                    incomplete[uid] = lack
    finally:
        with contextlib.suppress(Exception):
            index.close()
    print(json.dumps({"in_pacs": sorted(in_pacs), "incomplete": incomplete}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
