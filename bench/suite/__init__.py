"""``python -m bench``: every system on every workload, side by side (see bench/README.md).

``venvs`` builds each peer's virtual environment, ``runner`` runs the harnesses, ``report``
prints the tables and writes the summary, ``chart`` draws the PNG (in its own venv).
"""
