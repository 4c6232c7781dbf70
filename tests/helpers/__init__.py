"""Helpers shared by the tests, ``scripts/`` and ``benchmarks/`` (no tests, no fixtures).

- :mod:`tests.helpers.audio`: the bundled clips and synthetic test audio.
- :mod:`tests.helpers.server`: real ``deepfake-audio serve`` processes on 127.0.0.1.
- :mod:`tests.helpers.artefacts`: model-folder copies and hostile pickles.

Fixtures live in ``tests/conftest.py`` (and ``tests/reliability/conftest.py``).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
