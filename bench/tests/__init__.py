"""The benchmark suite's own tests (``python -m pytest bench/tests``): no product test here."""
