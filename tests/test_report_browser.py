"""The HTML report as a reader sees it: Chromium (Debian's, driven by Playwright) opens report.html of a
reduced DAG, reads the start page, opens every page of every category by its eye button, and checks that
each table page is an HTML table with a caption that fits its frame, each figure loads, and the browser
logs no error. Skipped, with a message, only where chromium cannot be installed (playwright is in the dev
extra)."""

import os
import re
import shutil
import tempfile

import pytest
from test_workflow import BIN, micro_workdir, snakemake

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Figure 3's table and figure, the cost table and Table 6 with its sweep figure: every kind of report page.
TARGETS = ("figure3", "cost", "table6")

pytestmark = pytest.mark.slow  # a reduced DAG of 14 runs, then the browser: about 2 minutes


@pytest.fixture(scope="module")
def report(tmp_path_factory, fashion_mnist_root):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)")
    workdir = micro_workdir(tmp_path_factory.mktemp("report"))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "NORMAE_FASHION_MNIST": str(fashion_mnist_root),
        "OMP_NUM_THREADS": "1",
    }
    snakemake(workdir, *TARGETS, "--config", "scale=micro", env=env)
    snakemake(workdir, *TARGETS, "--config", "scale=micro", "--report", "report.html", env=env)
    return workdir / "report.html"


@pytest.fixture
def browser_page(report):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    problems: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = context.new_page()
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(report.as_uri())
        yield page, problems
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_each(page, category):
    """Click ``category`` in the menu, then each listed result's eye button in turn; yield its row's label
    once its page is shown."""
    back = page.locator("nav a", has_text=re.compile("^Results$"))  # the breadcrumb back to the categories
    if back.count():
        back.first.click()
    page.get_by_text(category, exact=True).first.click()
    rows = page.locator("nav").first.locator("tbody tr")
    rows.first.wait_for()
    labels = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    for i, label in enumerate(labels):
        rows.nth(i).locator("a[iconname=eye]").click()
        yield label


def check_table_page(page, label):
    """The shown page is one HTML table with a caption above it, no wider than its frame (wide ones scroll)."""
    frame = page.frame_locator("iframe").first
    frame.locator("table").wait_for()
    assert frame.locator("table").count() == 1, label
    assert frame.locator("p.caption").first.inner_text().strip(), label
    assert frame.locator("tbody tr").count() >= 1, label
    scroll, width = frame.locator("html").evaluate("element => [element.scrollWidth, element.clientWidth]")
    assert scroll <= width, f"{label}: the page is {scroll} px wide in a {width} px frame"


def test_every_report_page_shows_its_table_or_figure_and_the_browser_logs_no_error(browser_page):
    page, problems = browser_page
    start = page.locator("body").inner_text()
    assert "pipeline check, not evidence" in start and "make evidence" in start and "with seeds 0" in start
    assert "the scale names" not in start
    listed = {}
    for category in ("Tables", "Table data (CSV)"):
        listed[category] = []
        for label in open_each(page, category):
            check_table_page(page, label)
            listed[category].append(label)
    # The paper's order (Table 6, Figure 3, the supplement's cost), not the file names'.
    assert listed["Tables"] == listed["Table data (CSV)"] == ["06 table6", "08 figure3", "12 cost"]
    figures = []
    for label in open_each(page, "Figures"):
        image = page.locator("img[src^='data:image/png']")
        image.wait_for()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), label
        figures.append(label)
    assert figures == ["06 table6_mask_ratio", "08 figure3_cnp_similarity"]
    assert problems == []
