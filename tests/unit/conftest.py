"""Unit tier: make the tests folder importable for the shared tiny-data builders."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
