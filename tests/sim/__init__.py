"""Deterministic simulation of the runtime: one seed drives everything, invariants are checked.

In the way FoundationDB and TigerBeetle test themselves: a seeded virtual-time event loop
(:mod:`tests.sim.loop`) runs agents, workers, the store (memory or SQLite), a virtual clock and
fault injection at the store seams (:mod:`tests.sim.faulty`); after every simulated run
:mod:`tests.sim.checks` verifies the runtime's invariants against an outside-world ledger
(:mod:`tests.sim.world`). ``python -m tests.sim --seed N`` replays one seed exactly.
"""
