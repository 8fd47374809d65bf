"""Reading the live Spark progress display (kernel/progress.py) out of a cell's iopub messages."""

from __future__ import annotations

from jupyter_spark_openstack.kernel.progress import MIME


def progress_displays(msgs: list[dict]) -> list[tuple[str, dict, str]]:
    """``[(msg_type, payload, text/plain)]`` of every progress display message, in order; all
    of one display (one display_id)."""
    out = []
    ids = set()
    for m in msgs:
        if m["msg_type"] in ("display_data", "update_display_data") and MIME in m["content"]["data"]:
            data = m["content"]["data"]
            out.append((m["msg_type"], data[MIME], data.get("text/plain", "")))
            ids.add(m["content"].get("transient", {}).get("display_id"))
    assert len(ids) <= 1, f"more than one progress display in one cell: {ids}"
    return out


def assert_live_progress(msgs: list[dict], tasks: int, what: str) -> list[tuple[str, dict, str]]:
    """The display appeared, moved while the tasks ran, and ended as a one-line summary."""
    shown = progress_displays(msgs)
    assert shown, "no progress display"
    assert shown[0][0] == "display_data" and all(t == "update_display_data" for t, _, _ in shown[1:])
    live = [p for _, p, _ in shown if not p["done"]]
    done_counts = [sum(op["completed"] for op in p["operations"]) for p in live]
    # it moved: several distinct, never decreasing figures while the job ran
    assert len(set(done_counts)) >= 3, done_counts
    assert done_counts == sorted(done_counts), done_counts
    assert any(0 < c < tasks for c in done_counts), done_counts
    assert any(op["running"] > 0 for p in live for op in p["operations"]), live[-1]
    assert all(op["tasks"] == tasks for op in live[-1]["operations"]), live[-1]
    kind, last, text = shown[-1]
    assert last["done"] and text == last["summary"] and "\n" not in text
    assert text.startswith(f"Spark: 1 Spark {what} · {tasks}/{tasks} tasks"), text
    op = last["operations"][0]
    assert op["done"] and op["link"] and op["link"].startswith("spark-openstack/ui/app/"), op
    return shown
