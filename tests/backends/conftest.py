"""Cross-backend tests: collected only by `make test-backends` (BERT3D_TEST_BACKENDS=1), never by `make test`."""
import os

if not os.environ.get("BERT3D_TEST_BACKENDS"):
    collect_ignore_glob = ["test_*.py"]


import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
