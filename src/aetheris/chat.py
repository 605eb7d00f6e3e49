"""Conversations with an agent: the convention ``aetheris chat`` speaks.

A chat agent is a job that lives as long as its conversation:

* each thing the user says is a **signal** named ``message`` with the payload
  ``{"text": "..."}`` (``{"end": true}`` ends the conversation); the agent takes it with
  :func:`next_message`, which parks the job (no worker, no memory held) until it comes;
* each thing the agent says is a journaled **step** named ``reply`` whose result is the text:
  :func:`reply`. The terminal (or any client) shows the replies by reading the job's journal
  after the last event it has seen, locally or over ``GET /v1/jobs/{id}/events``.

Both halves are journal entries, so a conversation survives a worker's ``kill -9``: on the
next worker the recorded messages and replies replay without being taken or said again, and
only a turn that was in flight runs (its model call too, if it was not recorded). A reply is
shown once, when its event is appended: there is no streaming to the terminal, by design (a
chunk streamed and then lost with its worker would be a reply the journal never had).

:func:`turns` reads a journal back as the conversation it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aetheris.context import Context
from aetheris.journal import Event, EventType

__all__ = [
    "MESSAGE",
    "REPLY",
    "Turn",
    "end_payload",
    "message_payload",
    "next_message",
    "reply",
    "turns",
]

MESSAGE = "message"
REPLY = "reply"


def message_payload(text: str) -> dict[str, Any]:
    """The signal payload of one user message."""
    return {"text": text}


def end_payload() -> dict[str, Any]:
    """The signal payload that ends a conversation."""
    return {"end": True}


async def next_message(ctx: Context, *, timeout: float | None = None) -> str | None:
    """The user's next message, or ``None`` when the user ended the conversation. Parks the
    job until a ``message`` signal comes (``SignalTimeout`` after ``timeout`` seconds)."""
    payload = await ctx.wait_for_signal(MESSAGE, timeout=timeout)
    if not isinstance(payload, dict) or payload.get("end"):
        return None
    return str(payload.get("text", ""))


async def reply(ctx: Context, text: str) -> str:
    """Say ``text`` to the user: a journaled step ``reply`` that the terminal shows."""
    return await ctx.step(REPLY, _said, text)


def _said(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Turn:
    """One line of a conversation: who spoke (``user``, ``agent``, or ``end``: the user
    ended it) and what, with the seq of the event that holds it."""

    seq: int
    speaker: Literal["user", "agent", "end"]
    text: str


def turns(events: Iterable[Event]) -> list[Turn]:
    """The conversation a job's journal holds, in order."""
    found = []
    for event in events:
        if event.type is not EventType.OP:
            continue
        kind, name, result = (
            event.data.get("kind"),
            event.data.get("name"),
            event.data.get("result"),
        )
        if kind == "signal" and name == MESSAGE:
            if isinstance(result, dict) and not result.get("end"):
                found.append(Turn(event.seq, "user", str(result.get("text", ""))))
            else:
                found.append(Turn(event.seq, "end", ""))
        elif kind == "step" and name == REPLY and "result" in event.data:
            found.append(Turn(event.seq, "agent", str(result)))
    return found
