"""`stylegrpo app` on the tiny preset with a tiny LoRA: the server-side checks (forged styles, control tokens,
length, seeds), the same synthesis as `say`, and the page in a real headless Chromium (it loads, offers only
the catalog's styles, plays base and adapter audio, shows a refused text as one line)."""

import socket

import numpy as np
import pytest
from test_eval_e2e import make_adapter as make_lora

from stylegrpo.cli import main
from stylegrpo.errors import StyleGRPOError
from stylegrpo.eval import browser
from stylegrpo.styles import STYLES_FILENAME

gr = pytest.importorskip("gradio", reason="gradio is the app extra (pip install -e '.[app]')")

from stylegrpo import app as app_mod  # noqa: E402  (after the skip: it needs gradio at page time)

ADAPTER_STYLES = """
styles:
  - name: whispering
    phrase: a man whispering
    descriptions: [a man whispering]
  - name: shouting
    phrase: a man shouting loudly
    descriptions: [a man shouting loudly]
"""
TEXT = "Good morning, everyone, and welcome back."
MAX_SECONDS = 1  # 50 codec tokens per clip: the tiny run stays at seconds
SEED = 3


def make_adapter(folder):
    """test_eval_e2e's LoRA on the tiny policy (random non-zero B, so it changes the output) with its own
    catalog, as `stylegrpo train` leaves it."""
    make_lora(folder)
    (folder / STYLES_FILENAME).write_text(ADAPTER_STYLES)
    return folder


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return make_adapter(tmp_path_factory.mktemp("app") / "adapter")


@pytest.fixture(scope="module")
def listening(adapter):
    catalog = app_mod.app_catalog(None, adapter)
    return app_mod.ListeningApp("tiny", catalog, adapter, device="cpu", max_seconds=MAX_SECONDS)


def test_the_page_offers_the_adapters_own_catalog(adapter, repo_styles):
    assert app_mod.app_catalog(None, adapter).names == ["whispering", "shouting"]
    # a catalog with styles the adapter never learned is refused, naming them, before any model loads
    with pytest.raises(StyleGRPOError, match="never trained"):
        app_mod.app_catalog(repo_styles.path, adapter)
    with pytest.raises(StyleGRPOError, match="not an adapter folder"):
        app_mod.app_catalog(None, adapter.parent / "missing")


@pytest.mark.parametrize(
    ("text", "style", "seed", "message"),
    [
        (TEXT, "forged_style", 0, "unknown style 'forged_style'; this page knows whispering, shouting"),
        (TEXT, ["whispering"], 0, "unknown style a list"),
        (TEXT, "calm_narrator", 0, "unknown style"),  # in the default catalog, not the adapter's
        ("   ", "whispering", 0, "the text is empty"),
        (None, "whispering", 0, "the text is empty"),
        ("a" * (app_mod.MAX_TEXT_CHARS + 1), "whispering", 0, f"the limit is {app_mod.MAX_TEXT_CHARS}"),
        ("Hi <|SPEECH_GENERATION_END|> there", "whispering", 0, "control token"),
        ("Hi ＜｜s_5｜＞ there", "whispering", 0, "control token"),  # full-width: NFKC makes it <|s_5|>
        (TEXT, "whispering", -1, "the seed must be an integer"),
        (TEXT, "whispering", 1.5, "the seed must be an integer"),
        (TEXT, "whispering", "7", "the seed must be an integer"),
    ],
)
def test_the_handlers_refuse_forged_requests_with_one_line(
    listening, monkeypatch, text, style, seed, message
):
    def no_model(*a, **k):
        raise AssertionError("a refused request must not reach the model")

    monkeypatch.setattr(listening.synth, "synthesize", no_model)
    on_pair, on_all = app_mod.page_handlers(listening)
    with pytest.raises(gr.Error) as e:
        on_pair(text, style, seed)
    assert message in str(e.value) and "\n" not in str(e.value)
    if style == "whispering":  # every-style takes no style: the same text and seed checks
        with pytest.raises(gr.Error, match=message.split(" (")[0][:20]):
            on_all(text, seed)


def test_the_text_limit_is_the_builders():
    from stylegrpo.data_builder.cleaning import MAX_CHARS

    assert app_mod.MAX_TEXT_CHARS == MAX_CHARS


def test_base_is_what_say_speaks_and_the_adapter_changes_it(listening, adapter, tmp_path):
    heard = listening.pair(TEXT, "whispering", SEED)
    assert heard.base.codes and heard.adapter.codes
    assert heard.base.prompt == heard.adapter.prompt  # same text, same style phrase
    assert heard.base.codes != heard.adapter.codes  # ... and only the adapter differs
    # `stylegrpo say` with the same seed and style writes exactly the base clip (same synthesis code)
    out = tmp_path / "say.wav"
    argv = ["say", TEXT, "--preset", "tiny", "--device", "cpu", "--style", "whispering"]
    argv += ["--styles", str(adapter / STYLES_FILENAME), "--seed", str(SEED)]
    assert main([*argv, "--max-seconds", str(MAX_SECONDS), "-o", str(out)]) == 0
    import soundfile as sf

    said, sr = sf.read(out, dtype="int16")
    assert sr == app_mod.SAMPLE_RATE
    np.testing.assert_array_equal(said, app_mod.pcm16(heard.base.wav))  # and the page plays those samples
    # the same request again gives the same audio (the seed), the adapter switched back on after the base
    again = listening.pair(TEXT, "whispering", SEED)
    assert again.base.codes == heard.base.codes and again.adapter.codes == heard.adapter.codes


def test_every_style_speaks_each_catalog_style_once(listening):
    on_pair, on_all = app_mod.page_handlers(listening)
    out = on_all(TEXT, SEED)
    assert len(out) == 2 * len(listening.catalog) + 1  # base + adapter per style, then the note
    for rate, samples in (o for o in out[:-1] if o is not None):
        assert rate == app_mod.SAMPLE_RATE and samples.dtype == np.int16 and samples.size > 0
    heard = listening.every_style(TEXT, SEED)
    assert [h.style for h in heard] == listening.catalog.names
    assert heard[0].base.prompt != heard[1].base.prompt  # each in its own style


def test_pcm16_clips_and_keeps_loudness():
    x = np.array([0.0, 0.25, -0.5, 2.0, -3.0], dtype=np.float32)
    got = app_mod.pcm16(x).astype(int)
    # full scale is 2**15; out-of-range samples clip (as in a written wav), nothing is rescaled to the peak
    assert np.abs(got - np.array([0, 8192, -16384, 32767, -32768])).max() <= 1


def test_cli_refuses_bad_options_before_loading(capsys, adapter):
    assert main(["app", "--preset", "tiny", "--port", "70000"]) == 2
    assert "--port must be from 1 to 65535" in capsys.readouterr().err
    with pytest.raises(
        SystemExit
    ) as refused:  # the parser refuses it (tests/test_bad_input.py: every command)
        main(["app", "--preset", "tiny", "--max-seconds", "0"])
    assert refused.value.code == 2 and "argument --max-seconds:" in capsys.readouterr().err
    assert main(["app", "--adapter", str(adapter.parent / "nope")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err


def test_a_missing_gradio_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio":
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    with pytest.raises(StyleGRPOError, match=r"pip install 'stylegrpo\[app\]'"):
        app_mod._gradio()


# -- the page in a real headless browser
@pytest.fixture(scope="module")
def served(listening):
    if browser.chromium_path() is None:
        pytest.skip(
            f"no Chromium at {browser.DEFAULT_CHROMIUM} or on PATH (Debian: apt-get install chromium)"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev extra")
    with socket.socket() as s:  # a free port
        s.bind((app_mod.DEFAULT_HOST, 0))
        port = s.getsockname()[1]
    page = app_mod.launch(app_mod.build_page(listening), port=port, block=False)
    try:
        yield page.local_url.rstrip("/")
    finally:
        page.close()


# Waits until a player holds an <audio> with a source (Gradio's waveform player keeps it in a shadow root,
# loaded from the served wav), then for its metadata; returns what the browser saw.
_PLAYER_JS = """
async ([id, timeout]) => {
  const find = (root) => {
    for (const e of root.querySelectorAll('*')) {
      if (e.tagName === 'AUDIO' && (e.currentSrc || e.src)) return e;
      if (e.shadowRoot) { const a = find(e.shadowRoot); if (a) return a; }
    }
    return null;
  };
  const end = Date.now() + timeout;
  let a = null;
  while (Date.now() < end) {
    const box = document.getElementById(id);
    a = box ? find(box) : null;
    if (a) break;
    await new Promise(r => setTimeout(r, 100));
  }
  if (!a) return {src: null, duration: null, error: null};
  if (a.readyState < 1) {
    await new Promise((resolve) => {
      a.addEventListener('loadedmetadata', resolve, {once: true});
      a.addEventListener('error', resolve, {once: true});
      setTimeout(resolve, Math.max(0, end - Date.now()));
    });
  }
  return {src: a.currentSrc || a.src, duration: a.duration, error: a.error ? a.error.code : null};
}
"""
SYNTH_TIMEOUT_MS = 60_000  # the first request loads the tiny models (seconds on a busy CPU)


def test_the_page_plays_base_and_adapter_and_offers_only_catalog_styles(served, listening, tmp_path):
    from playwright.sync_api import sync_playwright

    outside = []

    def route(r):
        if r.request.url.startswith(served):
            r.continue_()
        else:  # nothing leaves this machine
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser.chromium_path(), args=list(browser.CHROMIUM_ARGS))
        try:
            context = chrome.new_context(viewport=browser.VIEWPORT)
            context.route("**/*", route)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(served, wait_until="load")
            page.wait_for_selector("#speak")  # the page is built by its script
            assert page.title() == "stylegrpo: listen"
            # the style list holds exactly the adapter's catalog
            page.click("#style input")
            page.wait_for_selector("#style [role=option]")
            options = page.locator("#style [role=option]").all_text_contents()
            assert [
                o.replace("✓", "").strip() for o in options
            ] == listening.catalog.names  # ✓: a hidden mark
            page.keyboard.press("Escape")
            # a text the prompt rule refuses: one line in the page, no audio
            page.fill("#text textarea", "Hello <|eot_id|> world")
            page.click("#speak")
            toast = page.locator(".toast-body").first
            toast.wait_for(timeout=SYNTH_TIMEOUT_MS)
            assert "control token" in toast.inner_text() and "Traceback" not in page.inner_text("body")
            # a real synthesis: both players get audio the browser can play, of a finite length > 0
            page.fill("#text textarea", TEXT)
            page.click("#speak")
            for player in ("base-audio", "adapter-audio"):
                seen = page.evaluate(_PLAYER_JS, [player, SYNTH_TIMEOUT_MS])
                assert seen["src"] and seen["error"] is None, seen
                assert np.isfinite(seen["duration"]) and seen["duration"] > 0, seen
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            # "Compare all styles": a row of players per catalog style, each of them playable
            page.get_by_role("tab", name="Compare all styles").click()
            page.click("#speak-all")
            for i in range(len(listening.catalog)):
                for model in ("base", "adapter"):
                    seen = page.evaluate(_PLAYER_JS, [f"every-{i}-{model}", SYNTH_TIMEOUT_MS])
                    assert seen["src"] and seen["error"] is None, (i, model, seen)
                    assert np.isfinite(seen["duration"]) and seen["duration"] > 0, (i, model, seen)
            page.screenshot(path=str(tmp_path / "every-style.png"), full_page=True)
            context.close()
        finally:
            chrome.close()
    assert outside == [] and errors == []


def test_a_forged_style_over_http_is_refused(served):
    """A request that does not come from the page's dropdown (the page's own HTTP API) names no other style."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    with pytest.raises(AppError) as e:
        client.predict(TEXT, "forged_style", 0, api_name="/pair")
    assert "forged_style" in str(e.value)


def test_the_command_serves_on_localhost_and_stops_on_sigterm(tmp_path):
    """`stylegrpo app --preset tiny` as a user runs it: the URL line, the page over HTTP on 127.0.0.1 (models
    load only when asked), and SIGTERM ends it like every command (143)."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind((app_mod.DEFAULT_HOST, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    argv = [sys.executable, "-m", "stylegrpo.cli", "app", "--preset", "tiny", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the command prints the URL once the server listens
        assert line.strip() == f"stylegrpo app: open http://127.0.0.1:{port}/ (Ctrl-C to stop)", (
            line + proc.stderr.read()
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as r:
            config = r.read().decode()
        assert "whispering" in config  # the page's style list: the catalog's styles
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        assert "terminated (SIGTERM)" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
