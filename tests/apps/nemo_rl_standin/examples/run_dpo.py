"""Stand-in for NeMo RL's examples/run_dpo.py (see ../standin.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standin import main  # noqa: E402

if __name__ == "__main__":
    main("dpo")
