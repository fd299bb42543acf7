"""``python -m tests.multihost.check EXPECTED.json``: run inside a host of the site.

Prints one JSON line: the acknowledged instances the PACS holds and the series that are not
complete (in the PACS, indexed as stored, thumbnail, validation), with what each lacks. The
settings come from the host's environment (the shared services' addresses).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dicomflow.config import load_settings
from tests.faults.drill import completion


def main(path: str) -> int:
    expected = {uid: set(sops) for uid, sops in json.loads(Path(path).read_text()).items()}
    settings = load_settings(create_secrets=False)
    in_pacs, incomplete = completion(settings, expected)
    print(json.dumps({"in_pacs": sorted(in_pacs), "incomplete": incomplete}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
