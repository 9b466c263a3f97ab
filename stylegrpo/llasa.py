"""The Llasa policy: loading (with a PEFT adapter), speech token <-> codec id mapping, batched generation.

Llasa is a Llama model whose vocabulary holds the Llama-3 text tokens, 8 Llasa special tokens and one
token ``<|s_N|>`` per XCodec2 code N. At inference the prompt is a chat (see ``styles.PromptTemplate``)
rendered with ``continue_final_message=True`` so it ends with ``<|SPEECH_GENERATION_START|>``; the model
writes ``<|s_N|>`` tokens and stops at ``<|SPEECH_GENERATION_END|>``. Token ids are always looked up from
the tokenizer, never hard-coded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StyleGRPOError, clip, quote
from .tiny import resolve_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# The 8 tokens Llasa added to the Llama-3 vocabulary, in the order of its training code (ids 128256..).
LLASA_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|TEXT_GENERATION_START|>",
    "<|TEXT_GENERATION_END|>",
    "<|TEXT_UNDERSTANDING_START|>",
    "<|TEXT_UNDERSTANDING_END|>",
    "<|SPEECH_GENERATION_START|>",
    "<|SPEECH_GENERATION_END|>",
    "<|SPEECH_UNDERSTANDING_START|>",
    "<|SPEECH_UNDERSTANDING_END|>",
)
SPEECH_START = "<|SPEECH_GENERATION_START|>"
SPEECH_END = "<|SPEECH_GENERATION_END|>"
SPEECH_TOKEN_RE = re.compile(r"^<\|s_(\d+)\|>$")


def speech_token(code: int) -> str:
    """The token string of codec id ``code``: ``<|s_N|>`` (the format the prompt function emits)."""
    from .styles import SPEECH_TOKEN_FORMAT

    return SPEECH_TOKEN_FORMAT.format(code)


# Sampling defaults of Llasa's own inference code (model card): do_sample, temperature 0.8, top_p 1.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 1.0
# Llasa's inference passes no top_k, so the checkpoint's generation config (transformers' default: 50)
# applies; None keeps that. Note TRL's GRPOConfig defaults to top_k 0 (full vocabulary).
DEFAULT_TOP_K = None
LLASA_MAX_LENGTH = 2048  # Llasa's total budget (prompt + speech tokens), as in its inference code
DEFAULT_BATCH_SIZE = 8  # prompts generated together; the presets set their own

# Pad token candidates, best first. The real Llasa tokenizer (Llama-3.2) has no pad token. Padding must
# use a token the model never writes inside speech and that is NOT the end token: TRL counts a completion
# whose last id is the pad as "terminated", and a pad equal to <|SPEECH_GENERATION_END|> would hide a
# truncated completion as a finished one (and would be masked out of labels by collators that mask pads).
# <|finetune_right_pad_id|> is Llama-3.1+'s reserved padding token (never trained on); <|end_of_text|>
# is the base Llama end token, never part of Llasa's speech output. Pads are masked by attention anyway.
PAD_CANDIDATES: tuple[str, ...] = (
    "<|finetune_right_pad_id|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
)


class SpeechTokens:
    """Speech token <-> codec id mapping of one tokenizer.

    ``first_id`` is the id of ``<|s_0|>``; when ``<|s_0|>..<|s_{N-1}|>`` have contiguous ids (the released
    tokenizers) the mapping is arithmetic, otherwise it goes through dictionaries.
    """

    def __init__(self, code_of_id: Mapping[int, int], start_id: int, end_id: int):
        if not code_of_id:
            raise StyleGRPOError("the tokenizer has no speech tokens <|s_N|>: is this a Llasa tokenizer?")
        codes = sorted(code_of_id.values())
        if codes != list(range(len(codes))):
            missing = sorted(set(range(codes[-1] + 1)) - set(codes))[:5]
            raise StyleGRPOError(
                f"the tokenizer's speech tokens are not <|s_0|>..<|s_N-1|>: missing e.g. {missing}"
            )
        self.start_id = int(start_id)
        self.end_id = int(end_id)
        self.num_codes = len(codes)
        self._id_of_code = {c: i for i, c in code_of_id.items()}
        self.first_id = self._id_of_code[0]
        self.contiguous = all(self._id_of_code[c] == self.first_id + c for c in range(self.num_codes))
        self._code_of_id = None if self.contiguous else dict(code_of_id)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpeechTokens:
        vocab: dict[str, int] = tokenizer.get_vocab()
        missing = [t for t in (SPEECH_START, SPEECH_END) if t not in vocab]
        if missing:
            raise StyleGRPOError(f"the tokenizer lacks {', '.join(missing)}: is this a Llasa tokenizer?")
        code_of_id: dict[int, int] = {}
        for token, idx in vocab.items():
            m = SPEECH_TOKEN_RE.match(token)
            if m:
                code_of_id[int(idx)] = int(m.group(1))
        return cls(code_of_id, vocab[SPEECH_START], vocab[SPEECH_END])

    def is_speech(self, token_id: int) -> bool:
        if self.contiguous:
            return self.first_id <= token_id < self.first_id + self.num_codes
        return token_id in self._code_of_id  # type: ignore[operator]

    def code(self, token_id: int) -> int | None:
        """The codec id of a token id, or None when it is not a speech token."""
        if self.contiguous:
            c = token_id - self.first_id
            return c if 0 <= c < self.num_codes else None
        return self._code_of_id.get(token_id)  # type: ignore[union-attr]

    def codes_from_ids(self, ids: Iterable[int] | Any) -> list[int]:
        """Codec ids of a completion: its ``<|s_N|>`` tokens up to the end token; other tokens are ignored.

        Accepts a list or a 1-D tensor/array of token ids (prompt excluded).
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            c = self.code(i)
            if c is not None:
                out.append(c)
        return out

    def ids_from_codes(self, codes: Iterable[int]) -> list[int]:
        """Token ids of codec ids (raises ValueError for an id outside 0..num_codes-1)."""
        out = []
        for c in codes:
            c = int(c)
            if not 0 <= c < self.num_codes:
                raise ValueError(f"codec id {c} outside 0..{self.num_codes - 1}")
            out.append(self.first_id + c if self.contiguous else self._id_of_code[c])
        return out

    def has_end(self, ids: Iterable[int] | Any) -> bool:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return any(int(i) == self.end_id for i in ids)


def speech_tokens(tokenizer: Any) -> SpeechTokens:
    """The SpeechTokens of a tokenizer, computed once and kept on it (scanning a 193k vocab takes ~50 ms)."""
    cached = getattr(tokenizer, "_stylegrpo_speech_tokens", None)
    if cached is None:
        cached = SpeechTokens.from_tokenizer(tokenizer)
        tokenizer._stylegrpo_speech_tokens = cached
    return cached


def check_reference_codes(tokenizer: Any, reference: Any, where: str = "") -> None:
    """Refuse a reference (``styles.Reference``) holding a code that is not one of this policy's speech
    tokens: rendered as ``<|s_N|>`` text it would not be one token but plain text in the prompt."""
    if reference is None:
        return
    n = speech_tokens(tokenizer).num_codes
    bad = next((c for c in reference.codes if c >= n), None)
    if bad is not None:
        prefix = f"{where}: " if where else ""
        raise StyleGRPOError(
            f"{prefix}reference code {bad} is outside this policy's {n} speech tokens <|s_0|>..<|s_{n - 1}|>: "
            "the reference was encoded with another codec; encode it with the policy's own codec"
        )


def choose_pad_token(tokenizer: Any) -> str:
    """The pad token to use: the tokenizer's own if it is safe, else the first of PAD_CANDIDATES present."""
    vocab = tokenizer.get_vocab()
    own = tokenizer.pad_token
    if own and own not in (SPEECH_END, SPEECH_START) and not SPEECH_TOKEN_RE.match(own):
        return own
    for candidate in PAD_CANDIDATES:
        if candidate in vocab:
            return candidate
    for token in sorted(vocab):
        if token.startswith("<|reserved_special_token_"):
            return token
    raise StyleGRPOError(
        "the tokenizer has no usable pad token (none of " + ", ".join(PAD_CANDIDATES) + "); "
        "add one to the tokenizer folder"
    )


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Make a Llasa tokenizer ready for batched generation and TRL (in place; returns it).

    - eos = <|SPEECH_GENERATION_END|>: TRL's GRPOTrainer stops and masks completions at the processing
      class's eos_token_id;
    - pad = a safe existing token (see PAD_CANDIDATES), never the end token;
    - padding_side = left: decoder-only batched generation needs prompts to end at the same position.
    """
    st = speech_tokens(tokenizer)
    tokenizer.eos_token = SPEECH_END
    tokenizer.pad_token = choose_pad_token(tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.eos_token_id != st.end_id or tokenizer.pad_token_id == st.end_id:
        raise StyleGRPOError("could not set eos/pad tokens on the Llasa tokenizer")
    return tokenizer


def _load_error(what: str, spec: str, err: Exception) -> StyleGRPOError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    hint = (
        " (offline: HF_HUB_OFFLINE is set and the model is not in the local cache; use --preset tiny or a folder)"
        if offline
        else " (check the hub id or folder, your network, and `huggingface-cli login` for gated models)"
    )
    return StyleGRPOError(f"cannot load {what} {spec!r}: {type(err).__name__}: {err}".rstrip() + hint)


def load_tokenizer(spec: str) -> Any:
    """The Llasa tokenizer of ``spec`` (hub id, folder or tiny:llasa), prepared with prepare_tokenizer."""
    from transformers import AutoTokenizer

    path = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _load_error("tokenizer", spec, e) from e
    return prepare_tokenizer(tokenizer)


def load_policy(
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    adapter: str | os.PathLike[str] | None = None,
    merge: bool = False,
) -> tuple[Any, Any]:
    """Load a Llasa model and its tokenizer; optionally put a PEFT adapter on top (and merge it).

    ``dtype`` None means :func:`presets.default_dtype` of the device. The model is in eval mode, its
    generation config stops at <|SPEECH_GENERATION_END|> only (Llama's own end-of-turn ids would cut
    speech short and are not Llasa's stop) and pads with the tokenizer's pad id.
    """
    from transformers import AutoModelForCausalLM

    from .presets import default_dtype, resolve_device

    device = resolve_device(device)
    dtype = dtype or default_dtype(device)
    tokenizer = load_tokenizer(spec)
    path = resolve_model(spec)
    try:
        # device_map loads the weights straight onto the device (no full CPU copy of an 8B model first)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=str(device))
    except (OSError, ValueError) as e:
        raise _load_error("policy", spec, e) from e
    n_embed = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_embed:
        raise StyleGRPOError(
            f"{spec}: the tokenizer has {len(tokenizer)} tokens but the model only {n_embed} embeddings"
        )
    if adapter is not None:
        model = _load_adapter(model, adapter, merge)
    model.to(device)
    model.eval()
    st = speech_tokens(tokenizer)
    model.generation_config.eos_token_id = st.end_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    log.info(
        "loaded policy %s%s (%s, %s, %.1f M params)",
        spec,
        f" + adapter {adapter}{' (merged)' if merge else ''}" if adapter else "",
        device,
        str(dtype).replace("torch.", ""),
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return model, tokenizer


ADAPTER_CONFIG = "adapter_config.json"  # PEFT's file in every adapter folder


def check_adapter_folder(adapter: str | os.PathLike[str]) -> Path:
    """Refuse, before any model loads, a folder that is not a readable PEFT adapter; returns the folder."""
    folder = Path(adapter)
    config = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise StyleGRPOError(
            f"--adapter {folder}: not an adapter folder (no such folder); pass the folder `stylegrpo train` wrote"
        )
    if not config.is_file():
        raise StyleGRPOError(
            f"{folder}: not a PEFT adapter folder (no {ADAPTER_CONFIG}); pass the folder `stylegrpo train` "
            "wrote (its final adapter or a checkpoint-N folder)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise StyleGRPOError(f"{config}: cannot read the adapter's config: {clip(str(e))}") from None
    except json.JSONDecodeError as e:
        raise StyleGRPOError(
            f"{config}:{e.lineno}:{e.colno}: the adapter's config is not valid JSON ({e.msg}); "
            "copy the adapter folder again from the training run"
        ) from None
    if not isinstance(data, dict):
        raise StyleGRPOError(
            f"{config}: the adapter's config is not a JSON object; copy the adapter folder again"
        )
    return folder


def check_adapter_styles(
    adapter: str | os.PathLike[str], styles: Iterable[str], option: str = "--style"
) -> None:
    """Refuse styles the adapter never learned: those missing from the ``styles.yaml`` it was trained with.

    ``stylegrpo train`` copies its catalog into the adapter folder; a folder without one (a checkpoint-N
    folder, an adapter from elsewhere) is not checked.
    """
    from .styles import STYLES_FILENAME, load_catalog

    own = Path(adapter) / STYLES_FILENAME
    if not own.is_file():
        log.debug("%s: no %s, so the styles it learned are not checked", adapter, STYLES_FILENAME)
        return
    known = load_catalog(own)
    unknown = [s for s in styles if s not in known]
    if unknown:
        raise StyleGRPOError(
            f"{option} {', '.join(map(quote, unknown[:5]))}{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}: the adapter {adapter} was never trained on "
            f"{'this style' if len(unknown) == 1 else 'these styles'}; it knows {', '.join(known.names)} "
            f"(its catalog: {own}; pass --styles {own})"
        )


ADAPTER_RECIPE = "recipe.yaml"  # the resolved recipe `stylegrpo train` writes beside the final adapter


def adapter_dataset(adapter: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(dataset folder, recipe file): the prompt dataset an adapter was trained on, as its ``recipe.yaml``
    records it (``dataset_path``). A relative path is read against the folder training ran in, found from the
    recorded ``output_dir`` (the adapter's parent folder); else against the current folder. Refuses, naming
    the recipe, when there is no recipe, it names no dataset, or that folder no longer exists."""
    from .yamlload import load_yaml, to_plain

    folder = Path(adapter)
    recipe = folder / ADAPTER_RECIPE
    hint = "pass --dataset DIR (or --texts FILE)"
    try:
        text = recipe.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StyleGRPOError(
            f"--adapter {folder}: no {ADAPTER_RECIPE} beside it to say which dataset it was trained on; {hint}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise StyleGRPOError(f"{recipe}: cannot read the adapter's recipe ({clip(str(e))}); {hint}") from None
    data = to_plain(load_yaml(text, recipe))
    raw = data.get("dataset_path") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        raise StyleGRPOError(f"{recipe}: records no dataset_path; {hint}")
    path = Path(raw)
    if not path.is_absolute():
        out = data.get("output_dir")
        base = Path.cwd()
        if isinstance(out, str) and out and not Path(out).is_absolute():
            trained_in = folder.resolve().parent  # the training output folder holding this adapter
            parts = Path(out).parts
            if len(trained_in.parts) > len(parts) and trained_in.parts[-len(parts) :] == parts:
                base = Path(*trained_in.parts[: -len(parts)])
        path = base / path
    if not path.is_dir():
        raise StyleGRPOError(
            f"{recipe}: the adapter's training dataset {path} (dataset_path: {quote(raw)}) no longer exists; {hint}"
        )
    return path, recipe


def _load_adapter(model: Any, adapter: str | os.PathLike[str], merge: bool) -> Any:
    from peft import PeftModel

    folder = check_adapter_folder(adapter)
    try:
        model = PeftModel.from_pretrained(model, str(folder))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise StyleGRPOError(f"{folder}: cannot load the adapter onto this policy: {e}") from e
    if merge:
        model = model.merge_and_unload()
    return model


@dataclass(frozen=True)
class Generation:
    """One completion: its codec ids, whether it hit the length cap before the end token, its length."""

    codes: list[int]
    truncated: bool  # True when no <|SPEECH_GENERATION_END|> came before the cap
    num_tokens: int  # completion tokens generated, the end token included
    token_ids: list[int] = field(default_factory=list, repr=False)  # the raw completion (up to the end)


# Llama-3.x chat templates write "Today Date: <today>" into the system header (through strftime_now) unless
# the caller passes date_string: prompts would then change from day to day, between training and inference.
# Every prompt is rendered with this fixed date instead: the templates' own fallback when strftime_now is
# unavailable. Templates that write no date ignore it.
PROMPT_DATE = "26 Jul 2024"


def render_prompts(tokenizer: Any, prompts: Sequence[Sequence[Mapping[str, str]] | str]) -> list[str]:
    """Prompt strings: chat messages rendered with the tokenizer's chat template and continue_final_message.

    A plain string is taken as already rendered. The date a template may write is always PROMPT_DATE.
    """
    out = []
    for p in prompts:
        if isinstance(p, str):
            out.append(p)
        else:
            out.append(
                tokenizer.apply_chat_template(
                    list(p), continue_final_message=True, tokenize=False, date_string=PROMPT_DATE
                )
            )
    return out


def encode_prompts(tokenizer: Any, prompts: Sequence[Sequence[Mapping[str, str]] | str]) -> list[list[int]]:
    """Token ids of each rendered prompt (the template already holds the BOS token)."""
    texts = render_prompts(tokenizer, prompts)
    enc = tokenizer(texts, add_special_tokens=False)
    return [list(ids) for ids in enc["input_ids"]]


def prompt_text(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The rendered prompt as a string that ``tokenizer(text)`` turns into exactly Llasa's prompt ids.

    For trainers that tokenize string prompts with the default ``add_special_tokens=True`` (TRL's
    GRPOTrainer does for non-conversational datasets): when the tokenizer prepends BOS itself (Llama-3
    does), the template's own leading BOS is dropped so the prompt does not start with two.
    """
    text = render_prompts(tokenizer, [messages])[0]
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        auto = tokenizer("", add_special_tokens=True)["input_ids"]
        if auto[:1] == [tokenizer.bos_token_id]:
            text = text[len(bos) :]
    return text


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[Mapping[str, str]] | str],
    *,
    max_new_tokens: int,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int | None = DEFAULT_TOP_K,
    seed: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = LLASA_MAX_LENGTH,
    progress: bool | None = None,
) -> list[Generation]:
    """Generate speech for chat prompts, ``batch_size`` at a time with left padding.

    ``temperature`` 0 means greedy decoding. ``top_k`` None keeps the checkpoint's generation config
    (transformers' default 50 when it sets none), exactly as Llasa's own inference; 0 samples the full vocab. ``seed`` makes sampling reproducible: batch ``k`` is sampled
    under seed ``seed + k``, so the same prompts in the same order with the same batch size give the same
    codes. ``max_length`` (Llasa's 2048) caps prompt + completion on top of ``max_new_tokens``.
    ``progress`` None shows a bar when there are several batches.
    """
    import torch

    from .console import progress_bar

    if max_new_tokens < 1:
        raise StyleGRPOError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
    if temperature < 0:
        raise StyleGRPOError(f"temperature must be >= 0 (got {temperature})")
    if not 0 < top_p <= 1:
        raise StyleGRPOError(f"top_p must be in (0, 1] (got {top_p})")
    if top_k is not None and top_k < 0:
        raise StyleGRPOError(f"top_k must be >= 0 (got {top_k})")
    st = speech_tokens(tokenizer)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id != st.end_id:
        prepare_tokenizer(tokenizer)
    ids = encode_prompts(tokenizer, prompts)
    device = next(model.parameters()).device
    results: list[Generation] = []
    n_batches = math.ceil(len(ids) / batch_size) if ids else 0
    bar = progress_bar(
        total=len(ids),
        desc="generating",
        unit="prompt",
        disable=(n_batches <= 1) if progress is None else not progress,
    )
    sampling = temperature > 0
    for k in range(n_batches):
        batch = ids[k * batch_size : (k + 1) * batch_size]
        width = max(len(x) for x in batch)
        budget = max_new_tokens if max_length is None else min(max_new_tokens, max_length - width)
        if budget < 1:
            raise StyleGRPOError(
                f"prompt of {width} tokens leaves no room under the {max_length}-token budget; shorten the text"
            )
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch], device=device)
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch], device=device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget,
            "eos_token_id": st.end_id,
            "pad_token_id": pad,
            "do_sample": sampling,
        }
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p)
            if top_k is not None:
                kwargs["top_k"] = top_k
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed + k)
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        for row in out[:, width:].tolist():
            results.append(_parse_completion(row, st))
        bar.update(len(batch))
    bar.close()
    return results


def _parse_completion(row: list[int], st: SpeechTokens) -> Generation:
    try:
        end = row.index(st.end_id)
    except ValueError:
        return Generation(st.codes_from_ids(row), True, len(row), row)
    kept = row[: end + 1]
    return Generation(st.codes_from_ids(kept), False, end + 1, kept)


# ---------------------------------------------------------------------------------------------- tiny twin

# Fixed English text the tiny tokenizer's BPE is trained on (no download; the same merges everywhere).
_TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
Speak softly, speak clearly, and speak with a smile; the listener will hear the difference.
Whisper the words of the story slowly, then read them again in a bright and cheerful voice.
It was a calm evening, the rain had stopped, and the streets were quiet under the yellow lights.
Please convert the text to speech in the style of a narrator reading a bedtime story to children.
Numbers such as one, two, three, four, five, six, seven, eight, nine and ten are spoken every day.
Good morning! How are you today? I hope the weather is kind to you and your friends this week.
"""
TINY_VOCAB_SIZE = 384  # byte-level BPE: 256 byte symbols + 128 merges, enough to split the corpus into words
# Llama-3 special tokens the tiny tokenizer mirrors (chat headers, ends, the reserved padding token).
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
# A Llama-3-style chat template (user/assistant header blocks); continue_final_message leaves the last
# message open, so the prompt ends with <|SPEECH_GENERATION_START|> as in Llasa's inference.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# The tiny model's output head is rescaled so that, with random weights, it mostly writes speech tokens
# and sometimes ends: that exercises decoding, rewards, truncation and learning in offline runs.
_TINY_SPEECH_LOGIT_STD = 2.5  # speech-token logits ~ N(0, 2.5^2) vs 0 for text tokens: ~90% speech
_TINY_END_LOGIT_STD = 3.0  # end-token logit ~ N(0, 3^2): ends after 10-150 tokens, sometimes never


def build_tiny(folder: str | os.PathLike[str], num_codes: int | None = None) -> None:
    """Write a tiny Llasa twin (LlamaForCausalLM, random weights, local tokenizer) to ``folder``.

    The tokenizer mirrors the released one: byte-level BPE text tokens, the Llama-3 chat special tokens,
    the 8 Llasa tokens and ``<|s_0|>..<|s_{N-1}|>`` with N = the tiny codec's codebook size, in that id
    order, and a Llama-3-style chat template. Called by ``tiny.resolve_model("tiny:llasa")`` under a fixed
    seed; load it with :func:`load_policy` like the real model.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if num_codes is None:
        from .codec import TINY_QUANTIZATION_LEVELS

        num_codes = math.prod(TINY_QUANTIZATION_LEVELS)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _TINY_CORPUS.splitlines(), vocab_size=TINY_VOCAB_SIZE, min_frequency=1, show_progress=False
    )
    backend = bpe._tokenizer
    backend.add_special_tokens(list(LLAMA3_SPECIAL_TOKENS))
    bos = LLAMA3_SPECIAL_TOKENS[0]
    # Like Llama-3's tokenizer.json: encoding with add_special_tokens=True prepends <|begin_of_text|>
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A",
                pair=f"{bos} $A {bos} $B",
                special_tokens=[(bos, backend.token_to_id(bos))],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token="<|eot_id|>",  # Llama-3.2-Instruct's eos; load_policy switches it to the speech end
        clean_up_tokenization_spaces=False,
    )
    # Llasa's training code adds its tokens with add_tokens (not special), so skip_special_tokens keeps them.
    tokenizer.add_tokens(list(LLASA_SPECIAL_TOKENS))
    tokenizer.add_tokens([speech_token(n) for n in range(num_codes)])
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    tokenizer.model_max_length = LLASA_MAX_LENGTH
    st = SpeechTokens.from_tokenizer(tokenizer)
    assert st.num_codes == num_codes and st.contiguous

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=LLASA_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        tie_word_embeddings=False,  # an own output head, rescaled below
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # logits = h . w with h after RMSNorm (unit variance per dimension): a row w = unit vector * s
        # gives logits ~ N(0, s^2) across contexts. Text rows are zeroed (logit 0).
        head = model.lm_head.weight
        unit = head / head.norm(dim=1, keepdim=True)
        head.zero_()
        speech = slice(st.first_id, st.first_id + st.num_codes)
        head[speech] = unit[speech] * _TINY_SPEECH_LOGIT_STD
        head[st.end_id] = unit[st.end_id] * _TINY_END_LOGIT_STD
    model.generation_config.eos_token_id = st.end_id
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
