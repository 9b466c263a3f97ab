"""Prompts do not change with the calendar: a chat template that writes today's date (Llama-3.2 style,
through strftime_now) renders the same prompt on any day, in train, say and eval (one render function)."""

from datetime import datetime

import pytest

from stylegrpo.llasa import PROMPT_DATE, encode_prompts, load_tokenizer, prompt_text, render_prompts

# The date header of Llama-3.2's chat template, in front of a plain continuation of the messages
DATED_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}"
    "{%- if strftime_now is defined %}{%- set date_string = strftime_now('%d %b %Y') %}"
    "{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nToday Date: ' + date_string + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] }}"
    "{%- if not loop.last %}{{- '<|eot_id|>' }}{%- endif %}"
    "{%- endfor %}"
)
MESSAGES = [
    {
        "role": "user",
        "content": "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>Hi.<|TEXT_UNDERSTANDING_END|>",
    },
    {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>"},
]


@pytest.fixture
def dated_tokenizer():
    tok = load_tokenizer("tiny:llasa")
    tok.chat_template = DATED_TEMPLATE
    return tok


def on_day(monkeypatch, day: datetime) -> None:
    """Make the chat template's strftime_now see ``day``."""
    import transformers.utils.chat_template_utils as ctu

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return day

    monkeypatch.setattr(ctu, "datetime", Frozen)


def test_the_template_would_write_todays_date(dated_tokenizer, monkeypatch):
    """Without a fixed date the prompt changes with the day (so the test below tests something)."""
    seen = []
    for day in (datetime(2026, 1, 2), datetime(2027, 6, 30)):
        on_day(monkeypatch, day)
        seen.append(
            dated_tokenizer.apply_chat_template(MESSAGES, continue_final_message=True, tokenize=False)
        )
    assert "Today Date: 02 Jan 2026" in seen[0] and "Today Date: 30 Jun 2027" in seen[1]


def test_prompts_are_identical_on_two_different_days(dated_tokenizer, monkeypatch):
    rendered, texts, ids = [], [], []
    for day in (datetime(2026, 1, 2), datetime(2027, 6, 30)):
        on_day(monkeypatch, day)
        rendered.append(render_prompts(dated_tokenizer, [MESSAGES])[0])  # say / eval (generate)
        texts.append(prompt_text(dated_tokenizer, MESSAGES))  # train (as_text_prompts)
        ids.append(encode_prompts(dated_tokenizer, [MESSAGES])[0])
    assert rendered[0] == rendered[1] and texts[0] == texts[1] and ids[0] == ids[1]
    assert f"Today Date: {PROMPT_DATE}" in rendered[0]
    assert rendered[0].endswith("<|SPEECH_GENERATION_START|>")
