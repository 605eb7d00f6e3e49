"""Peer harnesses: the same workloads on Aetheris, DBOS, LangGraph, Temporal, Restate and Absurd.

Each peer runs in its own virtual environment (``bench/.venvs/<peer>``) and imports only its
own framework, the standard library and ``bench.peers.common``: never aetheris. Aetheris's own
entry, ``aetheris.py``, runs in the main environment over ``bench.workloads``.
"""
