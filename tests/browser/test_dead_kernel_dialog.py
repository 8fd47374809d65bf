"""A PySpark kernel whose interpreter cannot import ipykernel dies in a real JupyterLab; the lab
extension shows the server's diagnosis (category missing-ipykernel) in a dialog."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from .conftest import BROKEN_KERNEL, NO_MASTER_KERNEL, open_lab

# Runs in the page: record when the notebook's kernel first reports a death and when the
# diagnosis dialog appears (the extension's own latency, printed and kept as an artifact).
WATCH_JS = """
(kernelName) => {
  const app = window.jupyterapp;
  window.__jso = {created: performance.now(), dead: null, dialog: null, statuses: [],
                  statusesAtDialog: null};
  new MutationObserver(() => {
    if (!window.__jso.dialog && document.querySelector('.jso-diagnostics')) {
      window.__jso.dialog = performance.now();
      window.__jso.statusesAtDialog = window.__jso.statuses.slice();
    }
  }).observe(document.body, {childList: true, subtree: true});
  return app.commands.execute('notebook:create-new', {kernelName}).then(panel => {
    panel.sessionContext.statusChanged.connect((_, s) => {
      window.__jso.statuses.push(s);
      if (!window.__jso.dead && (s === 'autorestarting' || s === 'dead')) {
        window.__jso.dead = performance.now();
      }
    });
    return true;
  });
}
"""


def test_dead_pyspark_kernel_shows_the_diagnosis(page, lab, artifacts):
    open_lab(page, lab)
    page.evaluate(WATCH_JS, BROKEN_KERNEL)
    dialog = page.locator(".jp-Dialog .jso-diagnostics")
    expect(dialog).to_be_visible(timeout=90000)
    assert dialog.get_attribute("data-category") == "missing-ipykernel"
    assert dialog.locator(".jso-diag-category code").inner_text() == "missing-ipykernel"
    assert dialog.locator(".jso-diag-explanation").inner_text().strip()
    assert dialog.locator(".jso-diag-fix").inner_text().startswith("Fix: ")
    evidence = dialog.locator(".jso-diag-evidence").inner_text()
    assert "ipykernel" in evidence
    page.screenshot(path=str(artifacts / "lab-dead-kernel-dialog.png"))

    # the same diagnosis as the server's API for that kernel
    kernel_id = dialog.get_attribute("data-kernel-id")
    status, body = lab.get(f"spark-openstack/api/kernels/{kernel_id}/diagnostics")
    assert status == 200 and body["category"] == "missing-ipykernel"
    assert body["evidence"] and body["evidence"][0] in evidence

    # copy-log puts the server's log text on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url)
    page.locator(".jso-copy-log").click()
    expect(page.locator(".jso-copy-log")).to_have_text("Copied")
    clip = page.evaluate("() => navigator.clipboard.readText()")
    assert "No module named" in clip and "ipykernel" in clip

    # the diagnosis came from the kernel's captured output while the server was still
    # retrying it, not only after JupyterLab finally declared it dead
    timing = page.evaluate("() => window.__jso")
    assert "dead" not in timing["statusesAtDialog"], timing
    since_created = timing["dialog"] - timing["created"]
    (artifacts / "dead-kernel-dialog-latency.json").write_text(json.dumps(
        {"dialog_ms_after_notebook_created": since_created, **timing}, indent=2))
    print(f"dead-kernel dialog {since_created:.0f} ms after the notebook was created; "
          f"statuses then: {timing['statusesAtDialog']}")
    page.locator(".jp-Dialog button.jp-mod-accept").click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)


def test_sparksession_failure_shows_the_diagnosis(page, lab, artifacts):
    """The project's kernel runs, but its SparkSession cannot reach the master: the cell
    touching ``spark`` fails and the dialog explains why."""
    open_lab(page, lab)
    page.evaluate("""async (kernelName) => {
        const app = window.jupyterapp;
        const panel = await app.commands.execute('notebook:create-new', {kernelName});
        await panel.sessionContext.ready;
        panel.content.activeCell.model.sharedModel.setSource('spark.range(3).count()');
        await app.commands.execute('notebook:run-cell');
    }""", NO_MASTER_KERNEL)
    dialog = page.locator(".jp-Dialog .jso-diagnostics")
    expect(dialog).to_be_visible(timeout=120000)
    page.screenshot(path=str(artifacts / "lab-sparksession-failure-dialog.png"))
    kernel_id = dialog.get_attribute("data-kernel-id")
    status, body = lab.get(f"spark-openstack/api/kernels/{kernel_id}/diagnostics")
    assert status == 200
    # the dialog shows the server's category; for a running kernel whose logs match no rule
    # the server says "ok" and the dialog says "unknown", with the error as evidence
    expected = body["category"] if body["category"] != "ok" else "unknown"
    assert dialog.get_attribute("data-category") == expected, body
    evidence = dialog.locator(".jso-diag-evidence").inner_text()
    # the evidence names her master's address: the kernel's own check says spark://HOST:PORT,
    # the JVM's "Failed to connect to master HOST:PORT" (whichever line came first)
    assert lab.no_master_url.removeprefix("spark://") in evidence, (body, evidence)
    # the cell's own error is the kernel's explanation
    expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
           .first).to_contain_text("SparkSession could not start")
