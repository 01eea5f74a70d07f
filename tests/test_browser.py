"""The web UI in headless Chromium against a real three-region cluster.

Playwright drives Debian's ``chromium`` package (``/usr/bin/chromium``); a
test tool's own browser download is not used. ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import shutil

import pytest

import playwright.sync_api as playwright

pytestmark = [pytest.mark.cluster, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def edge_page(cluster, region: str) -> str:
    return cluster.info["regions"][region]["edge_http"][0]


def join(browser, url: str, name: str, region: str):
    page = browser.new_context().new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.get_by_test_id("join-name").fill(name)
    page.get_by_test_id("join-submit").click()
    playwright.expect(page.get_by_test_id("connection-state")).to_contain_text(f"in {region}", timeout=WAIT_MS)
    return page, errors


def test_two_regions_ask_vote_and_see_count(browser, cluster):
    room = cluster.create_room("Browser AMA")
    first, second = cluster.regions()[0], cluster.regions()[2]
    link = "/?room={room}&code={code}".format(**room)
    asker, asker_errors = join(browser, edge_page(cluster, first) + link, "Ada", first)
    voter, voter_errors = join(browser, edge_page(cluster, second) + link, "Grace", second)

    asker.get_by_test_id("ask-text").fill("How do edges in different regions agree?")
    asker.get_by_test_id("ask-submit").click()

    question = voter.get_by_test_id("question").filter(has_text="How do edges in different regions agree?")
    playwright.expect(question).to_have_count(1, timeout=WAIT_MS)
    playwright.expect(question.get_by_test_id("up-count")).to_have_text("0")
    question.get_by_test_id("vote-up").click()

    seen_by_asker = asker.get_by_test_id("question").filter(has_text="How do edges in different regions agree?")
    playwright.expect(seen_by_asker.get_by_test_id("up-count")).to_have_text("1", timeout=WAIT_MS)
    playwright.expect(seen_by_asker.get_by_test_id("score")).to_have_text("1")
    assert asker_errors == []
    assert voter_errors == []


def test_host_hides_question_for_audience(browser, cluster):
    room = cluster.create_room("Browser moderation")
    first, second = cluster.regions()[0], cluster.regions()[1]
    audience, _ = join(browser, edge_page(cluster, second) + "/?room={room}&code={code}".format(**room), "Linus", second)
    host = browser.new_context().new_page()
    host.goto(edge_page(cluster, first) + "/?room={room}#token={host_token}".format(**room))
    playwright.expect(host.get_by_test_id("role")).to_contain_text("host", timeout=WAIT_MS)

    audience.get_by_test_id("ask-text").fill("Please hide me")
    audience.get_by_test_id("ask-submit").click()
    on_host = host.get_by_test_id("question").filter(has_text="Please hide me")
    playwright.expect(on_host).to_have_count(1, timeout=WAIT_MS)
    on_host.get_by_test_id("moderate-hide").click()

    playwright.expect(audience.get_by_test_id("question").filter(has_text="Please hide me")).to_have_count(0, timeout=WAIT_MS)
    playwright.expect(on_host.get_by_test_id("status")).to_contain_text("hidden", timeout=WAIT_MS)


def test_moderator_invite_and_ban(browser, cluster):
    room = cluster.create_room("Browser bans")
    # One edge serves all three pages, so the audience's edge has the ban as
    # soon as the moderator's intent is committed.
    region = cluster.regions()[0]
    edge = edge_page(cluster, region)
    host = browser.new_context().new_page()
    host_errors = []
    host.on("pageerror", lambda error: host_errors.append(str(error)))
    host.goto(edge + "/?room={room}#token={host_token}".format(**room))
    playwright.expect(host.get_by_test_id("role")).to_contain_text("host", timeout=WAIT_MS)

    host.get_by_text("Room settings").click()
    host.get_by_test_id("invite-moderator").click()
    code = host.get_by_test_id("moderator-code")
    playwright.expect(code).not_to_be_empty(timeout=WAIT_MS)
    moderator_link = host.get_by_test_id("moderator-link").input_value()
    assert moderator_link == f"{edge}/?room={room['room']}&code={code.text_content()}"

    moderator, moderator_errors = join(browser, moderator_link, "Mia", region)
    playwright.expect(moderator.get_by_test_id("role")).to_contain_text("moderator")
    moderator.on("dialog", lambda dialog: dialog.accept())
    audience, audience_errors = join(browser, edge + "/?room={room}&code={code}".format(**room), "Trudy", region)

    audience.get_by_test_id("ask-text").fill("A question before the ban")
    audience.get_by_test_id("ask-submit").click()
    on_moderator = moderator.get_by_test_id("question").filter(has_text="A question before the ban")
    playwright.expect(on_moderator).to_have_count(1, timeout=WAIT_MS)
    own_question = moderator.get_by_test_id("question").filter(has_text="The moderator's own question")
    moderator.get_by_test_id("ask-text").fill("The moderator's own question")
    moderator.get_by_test_id("ask-submit").click()
    playwright.expect(own_question).to_have_count(1, timeout=WAIT_MS)
    playwright.expect(own_question.get_by_test_id("moderate-ban")).to_be_hidden()

    on_moderator.get_by_test_id("moderate-ban").click()
    banned = moderator.get_by_test_id("banned-user")
    playwright.expect(banned).to_have_count(1, timeout=WAIT_MS)
    playwright.expect(banned).to_contain_text("Trudy")
    playwright.expect(banned).to_contain_text("banned", timeout=WAIT_MS)
    playwright.expect(banned.get_by_test_id("unban")).to_be_enabled(timeout=WAIT_MS)
    playwright.expect(on_moderator.get_by_test_id("moderate-ban")).to_be_hidden()

    audience.get_by_test_id("ask-text").fill("A question after the ban")
    audience.get_by_test_id("ask-submit").click()
    playwright.expect(audience.get_by_test_id("error-message")).to_contain_text("banned", timeout=WAIT_MS)
    playwright.expect(moderator.get_by_test_id("question").filter(has_text="A question after the ban")).to_have_count(0)

    banned.get_by_test_id("unban").click()
    playwright.expect(banned).to_have_count(0, timeout=WAIT_MS)
    audience.get_by_test_id("ask-text").fill("A question after the unban")
    audience.get_by_test_id("ask-submit").click()
    after_unban = moderator.get_by_test_id("question").filter(has_text="A question after the unban")
    playwright.expect(after_unban).to_have_count(1, timeout=WAIT_MS)
    assert host_errors == []
    assert moderator_errors == []
    assert audience_errors == []


def test_outbox_survives_a_reload(browser, cluster):
    room = cluster.create_room("Browser reload")
    region = cluster.regions()[1]
    page, errors = join(browser, edge_page(cluster, region) + "/?room={room}&code={code}".format(**room), "Hedy", region)
    # An ask that this tab queued but the edge never received, as after a
    # reload while the socket was down.
    intent = {"type": "ask", "id": "5b0c6f0e-2f4c-4f1e-9a43-0c1d8c7e2a11", "text": "Asked before the reload", "anonymous": False}
    page.evaluate("([key, frames]) => sessionStorage.setItem(key, JSON.stringify(frames))", [f"ama.outbox.{room['room']}", [intent]])
    page.reload()

    question = page.get_by_test_id("question").filter(has_text="Asked before the reload")
    playwright.expect(question).to_have_count(1, timeout=WAIT_MS)
    # Committed, so the stored outbox is empty again and the core has it.
    page.wait_for_function("key => sessionStorage.getItem(key) === null", arg=f"ama.outbox.{room['room']}", timeout=WAIT_MS)
    assert any(view["text"] == "Asked before the reload" for view in cluster.export(room)["questions"])
    assert errors == []


def test_rate_limited_votes_are_resent(browser, cluster):
    room = cluster.create_room("Browser burst")
    region = cluster.regions()[0]
    page, errors = join(browser, edge_page(cluster, region) + "/?room={room}&code={code}".format(**room), "Katherine", region)
    page.get_by_test_id("ask-text").fill("Does a burst of votes get through?")
    page.get_by_test_id("ask-submit").click()
    question = page.get_by_test_id("question").filter(has_text="Does a burst of votes get through?")
    playwright.expect(question).to_have_count(1, timeout=WAIT_MS)
    question_id = question.get_attribute("data-question-id")

    # 46 votes at once, over the socket's burst of 30: the edge drops some
    # with one rate_limited error, and the page must resend them. The last
    # vote is +1.
    page.evaluate(
        """questionId => {
            for (let index = 0; index < 46; index += 1) {
                submitIntent({ type: "vote", question: questionId, value: [1, -1, 0][index % 3] });
            }
        }""",
        question_id,
    )
    page.wait_for_function("() => state.outbox.size === 0", timeout=30_000)
    playwright.expect(question.get_by_test_id("up-count")).to_have_text("1", timeout=WAIT_MS)
    view = next(view for view in cluster.export(room)["questions"] if view["id"] == question_id)
    assert view["up"] == 1
    assert errors == []
