"""``stylegrpo app``: a local Gradio page to listen to base and adapter side by side, in any catalog style.

Type a text, pick a style of the adapter's own catalog (the ``styles.yaml`` that ``stylegrpo train`` copied
into the adapter folder; ``--styles`` or the default catalog without one), and hear the base model and the
adapter speak it with the same seed; "Compare all styles" speaks the text once in every style. Synthesis is
``stylegrpo.synth.Synthesizer``, the code ``say`` and eval use: one policy load serves both models (the
adapter is kept unmerged and switched off for the base clips, as in eval). Models load on the first request
and stay loaded.

Texts are user input: the prompt rule of ``PromptTemplate.render`` (no control tokens), a length bound,
and styles are checked on the server (a forged request naming a style outside the catalog is refused), each
as a one-line message in the page. The page is served on 127.0.0.1 by default. Gradio is the ``app`` extra
(``pip install 'stylegrpo[app]'``), imported only when the page is built.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import argtypes
from .audio import SAMPLE_RATE
from .errors import StyleGRPOError, quote
from .llasa import check_adapter_folder, check_adapter_styles
from .presets import Preset, add_model_arguments, preset_from_args, tune_cpu_threads
from .speech_time import tokens_for_seconds
from .styles import STYLES_FILENAME, Catalog, check_prompt_inputs, load_catalog
from .styles_cli import add_styles_argument

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # this machine only: the page runs models on your hardware and has no login
# The longest text the page speaks: the builder's MAX_CHARS (stylegrpo.data_builder.cleaning), the longest
# text training prompts hold (~18 s of speech, within Llasa's 2048-token budget); a test keeps them equal.
MAX_TEXT_CHARS = 250
DEFAULT_SEED = 0  # as `say`: the same text, style and seed give the same audio
DEFAULT_TEXT = "The garden looks lovely this morning."  # something to press the button on
# Gradio's cache of served clips: sweep every 10 minutes, dropping clips older than an hour (bounded disk
# for a page left open for days)
CACHE_SWEEP = (600, 3600)
WAIT_POLL_S = 0.2  # how often the command checks that the server still runs (and sees Ctrl-C)
GRADIO_MISSING = (
    "the app needs Gradio, which is not installed: pip install 'stylegrpo[app]' "
    "(in a checkout: pip install -e '.[app]')"
)


class AppInputError(StyleGRPOError):
    """A request the page refuses (bad text, style or seed): shown in the page as one line."""


@dataclass(frozen=True)
class Heard:
    """One text in one style: the adapter's clip and the base's (same text, prompt and seed)."""

    style: str
    base: Any  # stylegrpo.synth.Clip
    adapter: Any | None  # None without an adapter


def pcm16(wav: np.ndarray) -> np.ndarray:
    """A float waveform as the 16-bit samples ``write_wav`` writes (the same clipping and libsndfile
    conversion, in memory): Gradio plays int16 as it is, while float audio it would rescale to its peak,
    hiding a quieter or louder style."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0),
        SAMPLE_RATE,
        subtype="PCM_16",
        format="WAV",
    )
    buf.seek(0)
    samples, _ = sf.read(buf, dtype="int16")
    return samples


def app_catalog(styles: str | os.PathLike[str] | None, adapter: str | os.PathLike[str] | None) -> Catalog:
    """The styles the page offers: ``--styles`` (each checked against the adapter's own catalog), else the
    adapter's own ``styles.yaml``, else the default catalog."""
    if adapter is not None:
        check_adapter_folder(adapter)  # named before any model loads
        own = Path(adapter) / STYLES_FILENAME
        if styles is None and own.is_file():
            return load_catalog(own)
    catalog = load_catalog(styles)
    if adapter is not None:
        check_adapter_styles(adapter, catalog.names, option="--styles")
    return catalog


class ListeningApp:
    """The page's server side, without Gradio: checks requests and synthesizes through one Synthesizer."""

    def __init__(
        self,
        preset: Preset | str,
        catalog: Catalog,
        adapter: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        max_seconds: float | None = None,
        synthesizer_factory: Callable[..., Any] | None = None,
    ):
        from .synth import Synthesizer

        self.catalog = catalog
        self.adapter = adapter
        max_new_tokens = None
        if max_seconds is not None:
            max_new_tokens = tokens_for_seconds(max_seconds)  # as say
        # merge=False: the base clips switch the adapter off (Synthesizer.adapter_disabled), one model in memory
        self.synth = (synthesizer_factory or Synthesizer)(
            preset,
            device,
            adapter=adapter,
            catalog=catalog,
            merge=False,
            max_new_tokens=max_new_tokens,
        )
        # one generation at a time: switching the adapter off is a change of the shared model
        self._lock = threading.Lock()

    # -- request checks (a request may be forged: it need not come from the page's own widgets)
    def check_text(self, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise AppInputError("the text is empty: type words to speak")
        text = text.strip()
        if len(text) > MAX_TEXT_CHARS:
            raise AppInputError(
                f"the text has {len(text)} characters; the limit is {MAX_TEXT_CHARS} (about 18 s of speech): "
                "shorten it or split it"
            )
        return text

    def check_style(self, style: Any) -> str:
        if not isinstance(style, str) or style not in self.catalog:
            shown = quote(style) if isinstance(style, str) else f"a {type(style).__name__}"
            raise AppInputError(
                f"unknown style {shown}; this page knows {', '.join(self.catalog.names)} "
                f"(catalog: {self.catalog.path or 'built in'})"
            )
        return style

    def check_seed(self, seed: Any) -> int:
        try:
            n = int(seed)
            ok = n == seed and 0 <= n <= argtypes.MAX_SEED
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise AppInputError(f"the seed must be an integer from 0 to {argtypes.MAX_SEED} (got {seed!r})")
        return n

    # -- synthesis
    def speak(self, text: Any, styles: Sequence[Any], seed: Any = DEFAULT_SEED) -> list[Heard]:
        """``text`` in each style, by the base and by the adapter with the same seed (checked first)."""
        text = self.check_text(text)
        names = [self.check_style(s) for s in styles]
        seed = self.check_seed(seed)
        phrases = [self.catalog.get(s).phrase for s in names]
        check_prompt_inputs(self.catalog.template, [text], phrases)  # the prompt rule, before any model runs
        texts = [text] * len(names)
        with self._lock:
            adapted = (
                self.synth.synthesize(texts, phrases, seed=seed, progress=False) if self.adapter else None
            )
            with self.synth.adapter_disabled():
                base = self.synth.synthesize(texts, phrases, seed=seed, progress=False)
        return [
            Heard(s, b, adapted[i] if adapted is not None else None)
            for i, (s, b) in enumerate(zip(names, base, strict=True))
        ]

    def pair(self, text: Any, style: Any, seed: Any = DEFAULT_SEED) -> Heard:
        return self.speak(text, [style], seed)[0]

    def every_style(self, text: Any, seed: Any = DEFAULT_SEED) -> list[Heard]:
        return self.speak(text, self.catalog.names, seed)


def _audio(clip: Any) -> tuple[int, np.ndarray] | None:
    if clip is None or len(clip.wav) == 0:
        return None  # no speech token: an empty player (the note says why)
    return SAMPLE_RATE, pcm16(clip.wav)


def _note(heard: Sequence[Heard]) -> str:
    parts = []
    for h in heard:
        for model, clip in (("base", h.base), ("adapter", h.adapter)):
            if clip is None:
                continue
            if not clip.codes:
                parts.append(f"{h.style} / {model}: the model wrote no speech tokens (no audio)")
            elif clip.truncated:
                parts.append(f"{h.style} / {model}: reached the length cap before it ended")
    return "; ".join(parts)


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline tool: no usage pings
    try:
        import gradio as gr
    except ImportError:
        raise StyleGRPOError(GRADIO_MISSING) from None
    return gr


def page_handlers(app: ListeningApp) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The page's two event handlers (speak one style; speak every style): a refused request raises
    ``gradio.Error``, which the page shows as one line."""
    gr = _gradio()

    def on_pair(text, style, seed):
        try:
            heard = app.pair(text, style, seed)
        except StyleGRPOError as e:
            raise gr.Error(str(e), print_exception=False) from None
        return _audio(heard.base), _audio(heard.adapter), _note([heard])

    def on_all(text, seed):
        try:
            heard = app.every_style(text, seed)
        except StyleGRPOError as e:
            raise gr.Error(str(e), print_exception=False) from None
        out: list[Any] = []
        for h in heard:
            out += [_audio(h.base), _audio(h.adapter)]
        return [*out, _note(heard)]

    return on_pair, on_all


def build_page(app: ListeningApp, *, title: str = "stylegrpo: listen") -> Any:
    """The Gradio Blocks page for ``app`` (not launched)."""
    gr = _gradio()
    names = app.catalog.names
    has_adapter = app.adapter is not None
    adapter_label = "adapter" if has_adapter else "adapter (none: start with --adapter DIR)"
    on_pair, on_all = page_handlers(app)

    preset = app.synth.preset
    lines = [
        f"# {title}",
        f"Preset `{preset.name}` (policy `{preset.policy}`), adapter `{app.adapter or 'none'}`, "
        f"catalog `{app.catalog.path or 'built in'}` ({len(names)} styles). "
        "Base and adapter speak the same text with the same seed. The first request loads the models.",
    ]
    if preset.random_weights:
        lines.append(
            f"**Preset `{preset.name}` has random weights: the audio is noise-like; it proves the pipeline only.**"
        )
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=CACHE_SWEEP) as page:
        gr.Markdown("\n\n".join(lines))
        text = gr.Textbox(
            value=DEFAULT_TEXT, label="Text", max_length=MAX_TEXT_CHARS, lines=2, elem_id="text"
        )
        seed = gr.Number(
            value=DEFAULT_SEED,
            label="Seed",
            precision=0,
            minimum=0,
            maximum=argtypes.MAX_SEED,
            elem_id="seed",
        )
        with gr.Tab("Base vs adapter"):
            style = gr.Dropdown(
                choices=names, value=names[0], label="Style", allow_custom_value=False, elem_id="style"
            )
            speak = gr.Button("Speak", variant="primary", elem_id="speak")
            with gr.Row():
                base_out = gr.Audio(label="base", interactive=False, elem_id="base-audio")
                adapter_out = gr.Audio(label=adapter_label, interactive=False, elem_id="adapter-audio")
            note = gr.Markdown(elem_id="note")
        with gr.Tab("Compare all styles"):
            speak_all = gr.Button("Speak in every style", variant="primary", elem_id="speak-all")
            all_outs = []
            for i, s in enumerate(app.catalog):  # ids by position: style names are the user's text
                with gr.Row():
                    gr.Markdown(f"**{s.name}**: {s.phrase}")
                    all_outs.append(
                        gr.Audio(label=f"{s.name}: base", interactive=False, elem_id=f"every-{i}-base")
                    )
                    all_outs.append(
                        gr.Audio(
                            label=f"{s.name}: {adapter_label}",
                            interactive=False,
                            elem_id=f"every-{i}-adapter",
                        )
                    )
            all_note = gr.Markdown(elem_id="all-note")
        speak.click(on_pair, [text, style, seed], [base_out, adapter_out, note], api_name="pair")
        speak_all.click(on_all, [text, seed], [*all_outs, all_note], api_name="every_style")
    page.queue(default_concurrency_limit=1)  # one synthesis at a time (the model is shared)
    return page


def launch(page: Any, host: str = DEFAULT_HOST, port: int | None = None, *, block: bool = True) -> Any:
    """Serve ``page``; ``block`` False returns at once (close with ``page.close()``)."""
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            ssr_mode=False,  # no Node server: the page is plain files served by Python
            quiet=True,
            prevent_thread_lock=not block,
            show_error=True,
        )
    except OSError as e:
        where = f"port {port}" if port else "the ports from 7860"
        raise StyleGRPOError(
            f"cannot serve the page on {host} at {where}: {e}; pick another with --port N"
        ) from None
    return page


# -- the `stylegrpo app` command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "A local page (Gradio) to hear base and adapter side by side in any catalog style, or one text in "
        "every style. Example: stylegrpo app --adapter runs/llasa/adapter; stylegrpo app --preset tiny"
    )
    parser.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder written by `stylegrpo train`")
    add_model_arguments(parser, overrides=("policy", "codec"))
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to serve on (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 opens it to your network)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: 7860, or the next free one up to 7959, as Gradio picks)",
    )
    parser.add_argument(
        "--max-seconds",
        type=argtypes.seconds,
        default=None,
        help="longest audio to generate per clip (default: the preset's cap, 30 s for Llasa)",
    )
    add_styles_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.port is not None and not 1 <= args.port <= 65535:
        raise StyleGRPOError(f"--port must be from 1 to 65535 (got {args.port})")
    _gradio()  # a missing extra is named before anything loads
    catalog = app_catalog(args.styles, args.adapter)
    preset = preset_from_args(args)
    tune_cpu_threads(preset, args.device)
    app = ListeningApp(preset, catalog, args.adapter, device=args.device, max_seconds=args.max_seconds)
    page = build_page(app)
    if args.host not in (DEFAULT_HOST, "localhost", "::1"):
        print(
            f"warning: serving on {args.host}: anyone who can reach this address can use the page "
            "(and this machine's models); there is no login"
        )
    launch(page, args.host, args.port, block=False)
    print(f"stylegrpo app: open {page.local_url} (Ctrl-C to stop)")
    try:
        while page.is_running:  # until Ctrl-C or SIGTERM (the command's usual exits, 130 / 143)
            time.sleep(WAIT_POLL_S)
    finally:
        page.close()
    return 0
