"""The demo page and /client.js in headless Chromium: live events, one stream for two tabs, leader handover."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.conftest import dev_api, open_streams, wait_for
from tests.integration.dev.running import DevRun

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120, func_only=True)]


async def open_demo(context: BrowserContext, dev: DevRun, user: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{dev.edge_url}/?user={user}")
    await expect(page.locator("#status")).to_have_text("live", timeout=15_000)
    return page


def page_change(dev: DevRun, organization: str, entity: str) -> str:
    result = dev_api(
        dev,
        "POST",
        "/dev/changes",
        {"type": "page.updated", "organizationId": organization, "entityId": entity, "data": {"title": entity}},
    )
    return str(result["cursor"])


async def shows(page: Page, cursor: str) -> None:
    await expect(page.locator(f'#events li[data-cursor="{cursor}"]')).to_have_count(1, timeout=10_000)


async def test_the_demo_page_shows_live_changes_and_a_membership_taking_effect(
    context: BrowserContext, dev: DevRun
) -> None:
    page = await open_demo(context, dev, "dave")
    await expect(page.locator("#role")).to_contain_text("leader")
    await expect(page.locator("#memberships")).to_contain_text("no memberships")

    # Grant dave a membership of Initech with the page's own button: its events start live.
    await page.select_option("#grant-org", "initech")
    await page.select_option("#grant-role", "member")
    await page.click("#grant")
    await expect(page.locator('#memberships li[data-organization="initech"]')).to_contain_text("member")
    await expect(page.locator('#events li[data-type="membership.created"]')).to_have_count(1)
    seen = page_change(dev, "initech", "initech-tps")
    await shows(page, seen)
    assert await page.locator("#cursor").text_content() == seen

    # Revoke with the page's button: the organization's events stop.
    await page.click('#memberships li[data-organization="initech"] button')
    await expect(page.locator('#events li[data-type="membership.deleted"]')).to_have_count(1)
    unseen = page_change(dev, "initech", "initech-tps")
    marker = dev_api(dev, "POST", "/dev/memberships", {"userId": "dave", "organizationId": "acme", "role": "member"})
    await shows(page, str(marker["cursor"]))
    await expect(page.locator(f'#events li[data-cursor="{unseen}"]')).to_have_count(0)


async def test_two_tabs_share_one_stream_and_both_update(context: BrowserContext, dev: DevRun) -> None:
    leader = await open_demo(context, dev, "bob")
    follower = await open_demo(context, dev, "bob")
    await expect(leader.locator("#role")).to_contain_text("leader")
    await expect(follower.locator("#role")).to_contain_text("follower")
    wait_for(lambda: open_streams(dev) == 1, what="one open stream on the edge")

    cursor = page_change(dev, "acme", "acme-roadmap")
    await shows(leader, cursor)
    await shows(follower, cursor)

    # A change made in the follower tab, tagged with its sourceId: the leader tab shows it, its own echo is
    # suppressed (the page applied it already).
    await follower.select_option("#change-org", "acme")
    await follower.click("#change-page")
    await expect(follower.locator("#change-result")).to_contain_text("at cursor")
    own = (await follower.locator("#change-result").text_content() or "").rsplit(" ", 1)[-1]
    await shows(leader, own)
    marker = page_change(dev, "acme", "acme-launch")
    await shows(follower, marker)
    await expect(follower.locator(f'#events li[data-cursor="{own}"]')).to_have_count(0)

    await asyncio.sleep(0.5)  # a second stream would show up by now
    assert open_streams(dev) == 1


async def test_closing_the_leader_tab_hands_the_stream_over_without_loss(context: BrowserContext, dev: DevRun) -> None:
    leader = await open_demo(context, dev, "carol")
    follower = await open_demo(context, dev, "carol")
    await expect(follower.locator("#role")).to_contain_text("follower")
    before = page_change(dev, "globex", "globex-budget")
    await shows(follower, before)

    await leader.close(run_before_unload=True)
    during = page_change(dev, "globex", "globex-hiring")  # while no tab holds the stream
    await expect(follower.locator("#role")).to_contain_text("leader", timeout=10_000)
    await expect(follower.locator("#status")).to_have_text("live")
    after = page_change(dev, "initech", "initech-tps")
    for cursor in (before, during, after):
        await shows(follower, cursor)
    wait_for(lambda: open_streams(dev) == 1, what="the new leader's stream, and only it")


async def test_a_reload_resumes_from_the_persisted_cursor_and_a_stale_one_refetches(
    context: BrowserContext, dev: DevRun
) -> None:
    page = await open_demo(context, dev, "alice")
    seen = page_change(dev, "acme", "acme-roadmap")
    await shows(page, seen)
    await page.close()  # the only tab: no stream for alice now
    missed = page_change(dev, "acme", "acme-launch")

    page = await open_demo(context, dev, "alice")
    await shows(page, missed)  # replayed from the cursor the first page persisted
    await expect(page.locator(f'#events li[data-cursor="{seen}"]')).to_have_count(0)

    # A persisted cursor the log cannot resume from: must-refetch, the page reloads its state, then live.
    storage_key = f"userstream:cursor:{dev.edge_url}/me/stream|alice"
    await page.evaluate("([key, value]) => localStorage.setItem(key, value)", [storage_key, str(int(missed) + 10**6)])
    await page.close()
    page = await open_demo(context, dev, "alice")
    await expect(page.locator("#events li.note")).to_contain_text("must refetch (cursor-unknown)")
    live = page_change(dev, "acme", "acme-roadmap")
    await shows(page, live)


async def test_the_demo_page_streams_with_a_cookie_instead_of_a_token_in_the_url(
    context: BrowserContext, dev: DevRun
) -> None:
    page = await context.new_page()
    stream_urls: list[str] = []
    page.on("request", lambda request: stream_urls.append(request.url) if "/me/stream" in request.url else None)
    await page.goto(f"{dev.edge_url}/?user=erin&auth=cookie")
    await expect(page.locator("#status")).to_have_text("live", timeout=15_000)
    marker = dev_api(dev, "POST", "/dev/memberships", {"userId": "erin", "organizationId": "acme", "role": "member"})
    await shows(page, str(marker["cursor"]))
    assert stream_urls
    assert all("access_token" not in url for url in stream_urls), stream_urls
    cookies = {cookie["name"] for cookie in await context.cookies()}
    assert "userstream_token" in cookies
    await page.close()
