"""The web UI in Chromium: a running job advances on screen without a reload, an approval is
granted and its job completes, an effect in doubt is settled, a keyed server asks for a key
and refuses a bad one. Screenshots of each page are saved (see conftest)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from aetheris.testing import simulate_crash
from tests.ui.conftest import Browser, Served, shoot

pytestmark = pytest.mark.ui


def step(page: Page, position: int) -> object:
    return page.locator(f'.tl-row.step[data-position="{position}"]')


def test_a_running_job_advances_live_on_its_page(served: Served, ui: Browser) -> None:
    job = served.start("pipeline", {"stages": 3})

    def look(page: Page) -> None:
        page.goto(f"{served.url}/ui/#/jobs/{job}")
        # Position 0 is the model call, 1 the reservation, 2.. the stages: the first one waits.
        expect(step(page, 2)).to_have_attribute("data-state", "running")
        expect(page.locator(".live")).to_have_text("● live")
        expect(page.locator(".tl-row.lane .phase.p-run.open")).to_have_count(1)
        page.evaluate("window.stayed = true")  # gone if the page were loaded again
        shoot(page, "job-running")

        served.open_gate(0)
        expect(step(page, 2)).to_have_attribute("data-state", "done")
        expect(step(page, 3)).to_have_attribute("data-state", "running")
        served.open_gate(1)
        served.open_gate(2)
        expect(page.locator(".job-head .badge")).to_have_text("succeeded")
        expect(page.locator(".live")).to_have_text("ended")
        expect(step(page, 4)).to_have_attribute("data-state", "done")
        assert page.evaluate("window.stayed") is True
        # The journal grew entry by entry, and the chain of what it shows verifies.
        events = served.call(served.app.open_store()).events
        count = len(served.call(events(job)))
        expect(page.locator(".journal .entry")).to_have_count(count)
        expect(page.locator(".verify")).to_contain_text(f"hash chain verified ({count} events)")
        # The model call: its messages, tokens and cost.
        calls = page.locator(".calls details.llm")
        expect(calls).to_have_count(1)
        expect(calls.first).to_contain_text("42 in + 9 out tokens")
        calls.first.locator(":scope > summary").click()
        expect(calls.first.locator(".msg.r-system")).to_contain_text("You plan pipelines")
        expect(calls.first.locator(".msg.r-reply")).to_contain_text("Plan for 3 stages")
        # The idempotent reservation is in the ledger, committed.
        expect(page.locator('.ledger tr[data-position="1"]')).to_have_attribute(
            "data-state", "committed"
        )
        page.locator('.tl-row.step[data-position="2"]').click()  # a row opens its journal entry
        expect(page.locator(".entry[open] .type")).to_have_text("op")
        shoot(page, "job-succeeded")

    ui.on_page(look)


def test_the_jobs_list_counts_filters_and_finds_by_id_or_key(served: Served, ui: Browser) -> None:
    done = served.call(
        served.app.start("refund", {"amount": 1}, idempotency_key="order-77", tenant="acme")
    ).job_id
    waiting = served.start("guarded", {"amount": 9})
    served.status_is(done, "succeeded")
    served.status_is(waiting, "parked")

    def look(page: Page) -> None:
        page.goto(f"{served.url}/ui/")
        expect(page.locator('.stat[data-status="succeeded"] b')).to_have_text("1")
        expect(page.locator('.stat[data-status="parked"] b')).to_have_text("1")
        expect(page.locator("table.jobs tbody tr")).to_have_count(2)
        expect(page.locator("#approvals-count")).to_have_text("1")
        shoot(page, "jobs")
        page.locator('.stat[data-status="parked"]').click()
        expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        expect(page.locator("table.jobs tbody tr")).to_have_attribute("data-job", waiting)
        page.locator('input[name="q"]').fill("order-77")
        page.locator('input[name="q"]').press("Enter")
        expect(page.locator("table.jobs tbody tr")).to_have_attribute("data-job", done)
        page.locator('input[name="q"]').fill(waiting[:-3])  # ids made in one millisecond share more
        page.locator('input[name="q"]').press("Enter")
        expect(page.locator("table.jobs tbody tr")).to_have_attribute("data-job", waiting)
        page.locator("table.jobs tbody tr a").click()
        expect(page).to_have_url(re.compile(f"#/jobs/{waiting}$"))

    ui.on_page(look)


def test_an_approval_shows_what_is_approved_and_its_job_completes(
    served: Served, ui: Browser
) -> None:
    job = served.start("guarded", {"amount": 120})
    served.status_is(job, "parked")

    def look(page: Page) -> None:
        page.goto(f"{served.url}/ui/#/approvals")
        card = page.locator(f'.approval[data-job="{job}"]')
        expect(card).to_contain_text("tool:pay")
        expect(card.locator(".asked")).to_contain_text("pay")
        expect(card.locator(".asked")).to_contain_text("120")
        expect(card.locator(".asked")).to_contain_text("ACME Corp")
        args_hash = served.call(served.app.get_job(job)).park_detail["args_hash"]  # type: ignore[index]
        expect(card.locator(".hash")).to_contain_text(args_hash)
        card.locator("button.reject").click()  # no reason: refused before anything is sent
        expect(card.locator(".error")).to_contain_text("Give a reason to reject")
        shoot(page, "approvals")
        card.locator("textarea").fill("invoice checked against the contract")
        card.locator("button.approve").click()
        expect(page.locator(".notice")).to_contain_text("Approved")
        expect(page.locator(".approvals")).to_contain_text("Nothing waits for approval")
        page.goto(f"{served.url}/ui/#/jobs/{job}")
        expect(page.locator(".job-head .badge")).to_have_text("succeeded")
        entry = page.locator('.entry:has(.type:text-is("op")):has(.kind:text-is("approval"))')
        expect(entry.locator(".outcome")).to_have_text("approved")
        entry.locator(":scope > summary").click()
        expect(entry).to_contain_text("invoice checked against the contract")
        # Fork it after the approval: the fork keeps the decision and pays again, live.
        page.locator('form.fork input[name="at"]').fill("1")
        page.locator("form.fork textarea").fill("{not json")
        page.locator("form.fork button").click()
        expect(page.locator("form.fork .error")).to_be_visible()
        page.locator('form.fork input[name="at"]').fill("1")
        page.locator("form.fork textarea").fill("")
        page.locator("form.fork button").click()
        expect(page.locator(".notice").last).to_contain_text("Forked at entry 1")
        expect(page).not_to_have_url(re.compile(f"#/jobs/{job}$"))
        expect(page.locator(".job-head .badge")).to_have_text("succeeded")
        shoot(page, "fork")
        # Compared with its origin: the same approval, the same payment, the same end.
        page.locator('form.compare input[name="other"]').fill("no-such-job")
        page.locator("form.compare button").click()
        expect(page.locator("form.compare")).to_contain_text("not found")
        page.locator('form.compare input[name="other"]').fill(job)
        page.locator("form.compare button").click()
        expect(page.locator("form.compare .replay")).to_have_text(
            "The runs are the same: every position and the end agree."
        )
        shoot(page, "compare")

    ui.on_page(look)


def test_an_effect_in_doubt_is_settled_from_the_ui(served: Served, ui: Browser) -> None:
    store = served.call(served.app.open_store())

    async def intent_written() -> bool:
        return bool(await store.effects(job_id=job))

    with simulate_crash("after_intent:charge"):  # the worker dies between intent and call
        job = served.start("refund", {"amount": 3})
        served.until(intent_written, "the charge's intent")
    served.status_is(job, "parked")  # a new worker took it over: the charge is in doubt

    def look(page: Page) -> None:
        page.goto(f"{served.url}/ui/#/jobs/{job}")
        expect(page.locator('.ledger tr.doubt[data-state="in_doubt"]')).to_have_count(1)
        expect(page.locator('.tl-row.step[data-position="0"]')).to_have_attribute(
            "data-state", "in_doubt"
        )
        expect(page.locator(".tl-row.lane .phase.p-recovery")).to_have_count(1)
        shoot(page, "job-in-doubt")
        page.goto(f"{served.url}/ui/#/effects")
        row = page.locator(f'tr.doubt[data-job="{job}"]')
        expect(row).to_contain_text("charge")
        row.locator('textarea[name="result"]').fill('{"charge": ch_3}')
        row.locator('input[name="reason"]').fill("the provider's dashboard shows ch_3")
        row.locator('button[type="submit"]').click()
        expect(row.locator(".error")).to_contain_text("The result is not valid JSON")
        shoot(page, "effects")
        row.locator('textarea[name="result"]').fill('{"charge": "ch_3"}')
        row.locator('button[type="submit"]').click()
        expect(page.locator(".notice")).to_contain_text("Resolved charge")
        expect(page.locator(".list")).to_contain_text("No effect is in doubt")
        served.status_is(job, "succeeded")
        assert served.call(served.app.get_job(job)).result == {"charge": "ch_3"}

    ui.on_page(look)


def test_a_keyed_server_asks_for_a_key_refuses_a_bad_one_and_shows_a_refusal(
    served_with_keys: Served, ui: Browser
) -> None:
    served = served_with_keys
    viewer = served.key("viewer")
    served.start("pipeline", {"stages": 1})

    def look(page: Page) -> None:
        page.goto(f"{served.url}/ui/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.locator("#key-input").fill("ak_0123456789abcdef_nope")
        page.locator("#key-form button[type=submit]").click()
        expect(page.locator("#key-error")).to_contain_text("The server refused this key")
        shoot(page, "key-refused")
        page.locator("#key-input").fill(viewer)
        page.locator("#key-form button[type=submit]").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#who")).to_contain_text("key ak_")
        expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        # The live stream sends the key in a header (fetch, not EventSource).
        page.locator("table.jobs tbody tr a").click()
        expect(step(page, 2)).to_have_attribute("data-state", "running")
        expect(page.locator(".live")).to_have_text("● live")
        page.locator('button[data-action="pause"]').click()
        expect(page.locator(".actions .error")).to_contain_text("Not allowed")
        expect(page.locator(".actions .error")).to_contain_text("'viewer' may not control")
        page.locator(".signal input").fill("go")
        page.locator(".signal textarea").fill("{not json")
        page.locator(".signal button").click()
        expect(page.locator(".signal .error")).to_contain_text("The payload is not valid JSON")
        served.open_gate(0)
        expect(page.locator(".job-head .badge")).to_have_text("succeeded")
        page.locator('button[data-action="replay"]').click()
        expect(page.locator(".replay")).to_contain_text("matched")
        assert page.evaluate("sessionStorage.length") == 1

    ui.on_page(look)
