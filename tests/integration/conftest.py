"""pytest set-up for the isvdd integration tests: the harness module sits
next to the tests; ISVDD (set by meson test) names the binary."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
