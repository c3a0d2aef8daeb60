"""``python -m yolos.cli ...`` (what ``torchrun -m yolos.cli train ...`` runs)."""
import sys

from . import main

sys.exit(main())
