"""Peer harnesses: the same workloads on DBOS, LangGraph, Temporal, Restate and Absurd.

Each peer runs in its own virtual environment (``bench/.venvs/<peer>``) and imports only its
own framework, the standard library and ``bench.peers.common``: never aetheris.
"""
