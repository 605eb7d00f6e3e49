"""Who is asking, and may they: API keys, roles and tenants.

Every request but the health checks carries ``Authorization: Bearer <key>``. A role allows a
set of actions (:data:`ALLOWED`); a key sees only its tenant's jobs, and another tenant's job
is answered exactly as a job that does not exist (404), so a key cannot learn that it exists.
The role is checked before the job is looked up, so a refusal for the role (403) says nothing
about any job either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fastapi import Request

from aetheris.api.errors import ApiError, not_found
from aetheris.app import App
from aetheris.keys import actor, authenticate
from aetheris.store.port import DEFAULT_TENANT, ApiKey, Job, Role


class Action(enum.StrEnum):
    READ = "read"
    START = "start"
    CONTROL = "control"  # cancel, pause, resume
    SIGNAL = "signal"
    DECIDE = "decide"  # approve, reject
    RESOLVE = "resolve"
    BUDGET = "budget"
    WEBHOOKS = "webhooks"  # subscribe URLs to the tenant's job events, read their deliveries


_OPERATE = {Action.START, Action.CONTROL, Action.SIGNAL, Action.RESOLVE, Action.BUDGET}
ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.OPERATOR: frozenset({Action.READ, *_OPERATE}),
    Role.APPROVER: frozenset({Action.READ, Action.DECIDE}),
    Role.VIEWER: frozenset({Action.READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a key, or (auth disabled, on loopback only) a local admin of every tenant
    (``tenant`` ``None``)."""

    role: Role
    tenant: str | None
    key: ApiKey | None = None

    @property
    def actor(self) -> str:
        """How this caller's actions are recorded in journals."""
        return actor(self.key) if self.key is not None else "local (auth disabled)"

    @property
    def home_tenant(self) -> str:
        """The tenant of the jobs this caller starts."""
        return self.tenant or DEFAULT_TENANT

    @property
    def sees_workers(self) -> bool:
        """Whether worker names (hosts, pids) are shown: to admins only."""
        return self.role is Role.ADMIN

    def sees(self, job: Job) -> bool:
        return self.tenant is None or job.tenant == self.tenant


LOCAL = Principal(Role.ADMIN, None)


async def identify(request: Request) -> Principal:
    """The principal of a request (401 without a valid key, unless auth is disabled)."""
    if not request.app.state.auth:
        return LOCAL
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer KEY")
    app: App = request.app.state.aetheris
    key = await authenticate(await app.open_store(), token.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "the API key is not valid (unknown or revoked)")
    return Principal(key.role, key.tenant, key)


def require(principal: Principal, action: Action) -> None:
    if action not in ALLOWED[principal.role]:
        raise ApiError(
            403,
            "forbidden",
            f"a key with role {principal.role.value!r} may not {action.value}",
            {"role": principal.role.value, "action": action.value},
        )


async def visible_job(app: App, principal: Principal, job_id: str) -> Job:
    """The job, if it exists and is the caller's tenant's; else 404 either way."""
    job = await (await app.open_store()).get_job(job_id)
    if job is None or not principal.sees(job):
        raise not_found(job_id)
    return job
