"""Entry point of the packaged application (a MAP runs ``python3 /opt/holoscan/app``): see app.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
