"""The prompt column, token by token, through a Llama-3-style chat template holding Llasa's special tokens.

The tokenizer is built here (byte-level BPE trained on a few sentences, wrapped in PreTrainedTokenizerFast)
with the same added tokens and the same kind of chat template as the released Llasa tokenizer.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from stylegrpo.data_builder import BuildConfig, build_dataset
from stylegrpo.data_builder.writer import split_file
from stylegrpo.styles import _REPO_ROOT, load_catalog

LLASA_SPECIAL_TOKENS = [
    "<|TEXT_GENERATION_START|>",
    "<|TEXT_GENERATION_END|>",
    "<|TEXT_UNDERSTANDING_START|>",
    "<|TEXT_UNDERSTANDING_END|>",
    "<|SPEECH_GENERATION_START|>",
    "<|SPEECH_GENERATION_END|>",
    "<|SPEECH_UNDERSTANDING_START|>",
    "<|SPEECH_UNDERSTANDING_END|>",
]
LLAMA3_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
# Llama-3 Instruct's template (as shipped with Llasa's tokenizer): bos, then header + trimmed content + eot.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
OFFICIAL = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|><|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n<|SPEECH_GENERATION_START|>"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [
            "Convert the text to speech in the style of a calm narrator.",
            "The quick brown fox jumps over the dog.",
        ],
        vocab_size=300,
        min_frequency=1,
        show_progress=False,
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    tok.add_tokens(LLAMA3_TOKENS + LLASA_SPECIAL_TOKENS, special_tokens=True)
    tok.bos_token, tok.eos_token, tok.pad_token = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def _ids(tok, messages) -> list[int]:
    out = tok.apply_chat_template(messages, continue_final_message=True, tokenize=True)
    if hasattr(out, "keys"):  # a BatchEncoding when the version returns a dict
        out = out["input_ids"]
    return list(out)


def _enc(tok, s: str) -> list[int]:
    return tok.encode(s, add_special_tokens=False)


@pytest.fixture(scope="module")
def dataset_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prompt")
    corpus = tmp / "c.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog.\nDid you hear that?\n", encoding="utf-8")
    config = BuildConfig(
        out=tmp / "out",
        corpora=[str(corpus)],
        styles=str(_REPO_ROOT / "styles.yaml"),
        test_size=0,
        progress=False,
    )
    build_dataset(config)
    return pq.read_table(config.out / split_file("train")).to_pylist()


def test_each_marker_is_one_token(tokenizer):
    for marker in LLASA_SPECIAL_TOKENS + LLAMA3_TOKENS:
        ids = _enc(tokenizer, marker)
        assert ids == [tokenizer.convert_tokens_to_ids(marker)], marker


def test_empty_description_renders_the_official_llasa_prompt_token_by_token(tokenizer, dataset_rows):
    catalog = load_catalog(_REPO_ROOT / "styles.yaml")
    text = dataset_rows[0]["text"]
    messages = catalog.template.render(text, "")
    assert messages == [
        {
            "role": "user",
            "content": f"Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>",
        },
        {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>"},
    ]
    assert catalog.prompt(text, None) == messages == catalog.template.render(text, None)
    rendered = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    assert rendered == OFFICIAL.format(text=text)
    sid = tokenizer.convert_tokens_to_ids
    expected = (
        [sid("<|begin_of_text|>"), sid("<|start_header_id|>")]
        + _enc(tokenizer, "user")
        + [sid("<|end_header_id|>")]
        + _enc(tokenizer, "\n\nConvert the text to speech:")
        + [sid("<|TEXT_UNDERSTANDING_START|>")]
        + _enc(tokenizer, text)
        + [sid("<|TEXT_UNDERSTANDING_END|>"), sid("<|eot_id|>"), sid("<|start_header_id|>")]
        + _enc(tokenizer, "assistant")
        + [sid("<|end_header_id|>")]
        + _enc(tokenizer, "\n\n")
        + [sid("<|SPEECH_GENERATION_START|>")]
    )
    assert _ids(tokenizer, messages) == expected


def test_dataset_prompts_keep_the_style_outside_the_markers(tokenizer, dataset_rows):
    sid = tokenizer.convert_tokens_to_ids
    start, end = sid("<|TEXT_UNDERSTANDING_START|>"), sid("<|TEXT_UNDERSTANDING_END|>")
    for row in dataset_rows:
        ids = _ids(tokenizer, row["prompt"])
        assert ids[-1] == sid("<|SPEECH_GENERATION_START|>")
        assert ids.count(start) == 1 and ids.count(end) == 1
        i, j = ids.index(start), ids.index(end)
        assert ids[i + 1 : j] == _enc(tokenizer, row["text"])  # only the words to speak inside the markers
        before = tokenizer.decode(ids[:i])
        assert f"Convert the text to speech in the style of {row['description']}:" in before
        assert row["description"] not in tokenizer.decode(ids[i:])
