"""Open a report in a real headless Chromium (Playwright) and check what a reader would see.

Used by the tests and handy for CI: ``check_report(path)`` loads ``report.html`` from disk with every
network request blocked (and recorded), waits for the images and the audio metadata, and returns what it
found. Needs the ``playwright`` Python package (a dev extra) and a Chromium binary: Debian's
``/usr/bin/chromium`` by default (never ``playwright install``).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

CHROMIUM_ENV = "STYLEGRPO_CHROMIUM"  # override the browser binary
DEFAULT_CHROMIUM = "/usr/bin/chromium"  # Debian's package (the Makefile installs it for the tests)
# no sandbox (containers, root), no GPU, and nothing that phones home on its own
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1366, "height": 900}  # a common laptop screen
AUDIO_TIMEOUT_MS = 15_000  # time for every <audio> to load its metadata from local files

_AUDIO_JS = """
async (timeout) => {
  const els = Array.from(document.querySelectorAll('audio'));
  const one = (a) => new Promise((resolve) => {
    const done = () => resolve({src: a.currentSrc || a.src, duration: a.duration,
                                error: a.error ? a.error.code : null});
    if (a.readyState >= 1) { done(); return; }
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    setTimeout(done, timeout);
    a.preload = 'metadata';
    a.load();
  });
  return Promise.all(els.map(one));
}
"""

_IMG_JS = """
() => Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                                              width: i.naturalWidth, height: i.naturalHeight}))
"""


@dataclass
class ReportCheck:
    """What the browser saw."""

    title: str = ""
    table_ids: list[str] = field(default_factory=list)
    n_table_rows: int = 0
    images: list[dict] = field(default_factory=list)  # src, complete, width, height
    audio: list[dict] = field(default_factory=list)  # src, duration, error, exists
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    blocked: list[str] = field(default_factory=list)  # the non-file:// ones (aborted)
    console_errors: list[str] = field(default_factory=list)
    text: str = ""  # the page's visible text
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[dict]:
        return [i for i in self.images if not (i["complete"] and i["width"] > 0)]

    @property
    def broken_audio(self) -> list[dict]:
        return [
            a for a in self.audio if not a["exists"] or a["error"] is not None or not (a["duration"] or 0) > 0
        ]


def chromium_path() -> str | None:
    """The Chromium binary to use, or None when there is none."""
    for cand in (
        os.environ.get(CHROMIUM_ENV),
        DEFAULT_CHROMIUM,
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _file_path(url: str) -> Path | None:
    u = urlparse(url)
    return Path(unquote(u.path)) if u.scheme == "file" else None


def check_report(
    report: str | os.PathLike[str],
    *,
    screenshot: str | os.PathLike[str] | None = None,
    full_page: bool = True,
    executable: str | None = None,
) -> ReportCheck:
    """Load ``report`` in headless Chromium with the network blocked and collect what it shows."""
    from playwright.sync_api import sync_playwright

    report = Path(report).resolve()
    exe = executable or chromium_path()
    if exe is None:
        raise FileNotFoundError(f"no Chromium found (looked at ${CHROMIUM_ENV}, {DEFAULT_CHROMIUM}, PATH)")
    result = ReportCheck()

    def route(r):
        url = r.request.url
        result.requests.append(url)
        if url.startswith("file://"):
            r.continue_()
        else:
            result.blocked.append(url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.console_errors.append(str(e)))
            page.goto(report.as_uri(), wait_until="load")
            result.title = page.title()
            result.table_ids = page.eval_on_selector_all("table", "ts => ts.map(t => t.id || '')")
            result.n_table_rows = page.eval_on_selector_all("table tr", "rs => rs.length")
            result.images = page.evaluate(_IMG_JS)
            audio = page.evaluate(_AUDIO_JS, AUDIO_TIMEOUT_MS)
            for a in audio:
                path = _file_path(a["src"])
                a["exists"] = bool(path and path.is_file())
            result.audio = audio
            result.text = page.inner_text("body")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=full_page)
                result.screenshot = Path(screenshot)
            context.close()
        finally:
            browser.close()
    return result


def problems(seen: ReportCheck) -> list[str]:
    """What is wrong with a report as the browser saw it (empty when it renders whole and offline)."""
    out = []
    if "stylegrpo eval" not in seen.title:
        out.append(f"unexpected title {seen.title!r}")
    missing_tables = {"overall-table", "style-table"} - set(seen.table_ids)
    if missing_tables:
        out.append(f"missing tables: {', '.join(sorted(missing_tables))}")
    if not seen.images:
        out.append("no images")
    out += [f"image did not load: {i['src']}" for i in seen.broken_images]
    out += [
        f"audio did not load: {a['src']} (exists={a['exists']}, error={a['error']}, duration={a['duration']})"
        for a in seen.broken_audio
    ]
    out += [f"network request left file://: {u}" for u in seen.blocked]
    out += [f"console error: {e}" for e in seen.console_errors]
    return out
