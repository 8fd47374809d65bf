"""Live Spark progress under a running cell, in Chromium: the project's PySpark kernel runs a
job of 40 slow tasks on the session cluster; the lab extension renders the kernel's progress
display, which appears, moves while the tasks run, and ends as a one-line summary."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from .conftest import LIVE_KERNEL, open_lab

JOB = ("print(sc.parallelize(range(40), 40)"
       ".map(lambda x: (__import__('time').sleep(0.25), x)[1]).sum())")


def test_progress_appears_moves_and_ends_as_a_summary(page, lab, artifacts):
    open_lab(page, lab)
    page.evaluate("""async ([kernelName, code]) => {
        const app = window.jupyterapp;
        const panel = await app.commands.execute('notebook:create-new', {kernelName});
        await panel.sessionContext.ready;
        const nb = panel.content;
        // a first cell brings the SparkSession up (the command resolves when it ran)
        nb.activeCell.model.sharedModel.setSource('sc.parallelize(range(4), 2).count()');
        await app.commands.execute('notebook:run-cell-and-insert-below');
        nb.activeCell.model.sharedModel.setSource(code);
        app.commands.execute('notebook:run-cell');   // not awaited: the test watches it run
    }""", [LIVE_KERNEL, JOB])
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    op = cell.locator(".jso-progress-op")
    expect(op).to_be_visible(timeout=120000)          # it appears
    link = op.locator("a.jso-progress-label")
    expect(link).to_have_text(re.compile(r"^Job \d+$"))
    job_id = link.inner_text().split()[1]
    href = link.get_attribute("href")
    assert "/spark-openstack/ui/app/app-" in href and href.endswith(f"/jobs/job/?id={job_id}"), href
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cell.locator(".jso-progress-done").count() == 0:
        text = op.locator(".jso-progress-tasks").text_content(timeout=1000) if op.count() else None
        if text and (not seen or seen[-1] != text):
            seen.append(text)
            if len(seen) == 2:
                page.screenshot(path=str(artifacts / "lab-live-progress.png"))
        time.sleep(0.1)
    # it moved: several task counts of the 40, rising, before the end
    counts = [int(t.split("/")[0]) for t in seen]
    assert len(counts) >= 3 and counts == sorted(counts) and all(t.endswith("/40 tasks") for t in seen), seen
    # it ends as the kernel's one-line summary, with the cell's own output below it
    done = cell.locator(".jso-progress-done")
    expect(done).to_be_visible()
    assert done.inner_text().startswith("Spark: 1 Spark job · 40/40 tasks"), done.inner_text()
    assert op.count() == 0
    expect(cell.locator(".jp-OutputArea-output").last).to_have_text("780")
    page.screenshot(path=str(artifacts / "lab-live-progress-done.png"))
