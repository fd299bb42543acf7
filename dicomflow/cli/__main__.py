"""``python -m dicomflow.cli``."""

from dicomflow.cli import main

main()
