"""Llasa policy: token mapping, prompt rendering, batched generation, seeds, caps and adapters (tiny twin)."""

import pytest
import torch

from stylegrpo.errors import StyleGRPOError
from stylegrpo.llasa import (
    LLASA_SPECIAL_TOKENS,
    SPEECH_END,
    SPEECH_START,
    SpeechTokens,
    choose_pad_token,
    encode_prompts,
    generate,
    load_policy,
    prompt_text,
    speech_tokens,
)
from stylegrpo.styles import PromptTemplate

TEMPLATE = PromptTemplate()
TEXTS = ["Hi.", "A much longer sentence, so that the prompts differ in length a lot.", "Good morning to you"]


@pytest.fixture(scope="module")
def policy():
    return load_policy("tiny:llasa", "cpu")


@pytest.fixture(scope="module")
def prompts():
    return [
        TEMPLATE.render(t, d) for t, d in zip(TEXTS, [None, "a whisper", "a cheerful child"], strict=True)
    ]


def test_tokenizer_is_ready_for_generation_and_trl(policy):
    model, tok = policy
    st = speech_tokens(tok)
    assert tok.eos_token == SPEECH_END and tok.eos_token_id == st.end_id
    assert tok.pad_token_id is not None and tok.pad_token_id != st.end_id
    assert not st.is_speech(tok.pad_token_id)
    assert tok.padding_side == "left"
    assert model.generation_config.eos_token_id == st.end_id
    assert all(t in tok.get_vocab() for t in LLASA_SPECIAL_TOKENS)


def test_speech_token_mapping(policy):
    _, tok = policy
    st = speech_tokens(tok)
    assert st.num_codes == 64  # the tiny codec's codebook, 4*4*4
    assert st.contiguous
    assert st.first_id == tok.convert_tokens_to_ids("<|s_0|>")
    assert tok.convert_tokens_to_ids("<|s_63|>") == st.first_id + 63
    assert st.start_id == tok.convert_tokens_to_ids(SPEECH_START)
    codes = [0, 5, 63, 17, 17]
    ids = st.ids_from_codes(codes)
    assert tok.convert_ids_to_tokens(ids) == ["<|s_0|>", "<|s_5|>", "<|s_63|>", "<|s_17|>", "<|s_17|>"]
    assert st.codes_from_ids(ids) == codes
    text_id = tok.convert_tokens_to_ids("<|eot_id|>")
    word_ids = tok("hello", add_special_tokens=False)["input_ids"]
    mixed = [*word_ids, ids[0], text_id, ids[1], st.start_id, st.end_id, ids[2]]
    assert st.codes_from_ids(mixed) == [0, 5]  # text tokens ignored, stops at the end token
    assert st.codes_from_ids(torch.tensor(mixed)) == [0, 5]
    assert st.codes_from_ids([]) == []
    with pytest.raises(ValueError):
        st.ids_from_codes([64])


def test_non_contiguous_speech_tokens_use_a_dict():
    st = SpeechTokens({10: 0, 12: 1, 11: 2}, start_id=1, end_id=2)
    assert not st.contiguous and st.num_codes == 3
    assert st.codes_from_ids([10, 11, 5, 12, 2, 10]) == [0, 2, 1]
    assert st.ids_from_codes([1, 2, 0]) == [12, 11, 10]
    with pytest.raises(StyleGRPOError, match="not <"):
        SpeechTokens({10: 0, 11: 2}, start_id=1, end_id=2)


def test_pad_choice_never_the_end_token(policy):
    _, tok = policy
    assert choose_pad_token(tok) == "<|finetune_right_pad_id|>"

    class Vocab:  # only what choose_pad_token reads: a vocabulary without Llama-3.1's reserved pad token
        pad_token = SPEECH_END

        def get_vocab(self):
            return {"<|end_of_text|>": 1, SPEECH_END: 2, "<|reserved_special_token_3|>": 3}

    assert choose_pad_token(Vocab()) == "<|end_of_text|>"


def test_rendered_prompt_ends_with_speech_generation_start(policy, prompts):
    _, tok = policy
    st = speech_tokens(tok)
    text = tok.apply_chat_template(prompts[1], continue_final_message=True, tokenize=False)
    assert text.endswith(SPEECH_START)
    assert "in the style of a whisper" in text
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    for ids in encode_prompts(tok, prompts):
        assert ids[-1] == st.start_id
        assert ids.count(tok.bos_token_id) == 1


def test_prompt_text_for_trainers_that_tokenize_strings(policy, prompts):
    """TRL tokenizes string prompts with add_special_tokens=True: the result must equal Llasa's prompt ids."""
    _, tok = policy
    assert tok("hi")["input_ids"][0] == tok.bos_token_id  # like Llama-3, the tiny tokenizer prepends BOS
    for msgs, ids in zip(prompts, encode_prompts(tok, prompts), strict=True):
        assert tok(prompt_text(tok, msgs))["input_ids"] == ids


def test_trl_style_generation_prompt_is_not_llasas_prompt(policy, prompts):
    """Canary: TRL 1.16 renders conversational prompts with add_generation_prompt=True, which closes the
    assistant message and opens a new one; Llasa needs continue_final_message (use prompt_text instead)."""
    _, tok = policy
    ids = tok.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert ids["input_ids"][-1] != speech_tokens(tok).start_id


def test_batched_greedy_equals_one_at_a_time(policy, prompts):
    model, tok = policy
    batched = generate(model, tok, prompts, max_new_tokens=24, temperature=0, batch_size=3)
    single = [generate(model, tok, [p], max_new_tokens=24, temperature=0)[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.codes for g in batched] == [g.codes for g in single]
    for g in batched:
        assert g.truncated == (speech_tokens(tok).end_id not in g.token_ids)
        assert g.num_tokens == len(g.token_ids) <= 24


def test_seed_reproducible(policy, prompts):
    model, tok = policy
    a = generate(model, tok, prompts, max_new_tokens=30, seed=7, batch_size=2)
    b = generate(model, tok, prompts, max_new_tokens=30, seed=7, batch_size=2)
    c = generate(model, tok, prompts, max_new_tokens=30, seed=8, batch_size=2)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    assert any(g.codes for g in a)  # the tiny twin mostly writes speech tokens


def test_length_cap_sets_truncated(policy, prompts):
    model, tok = policy
    st = speech_tokens(tok)
    gens = generate(model, tok, prompts * 2, max_new_tokens=3, seed=0)
    assert all(g.num_tokens <= 3 for g in gens)
    assert all(g.truncated == (st.end_id not in g.token_ids) for g in gens)
    assert any(g.truncated for g in gens)
    # the total budget (prompt + completion) also caps: leave room for 2 tokens only
    longest = max(len(ids) for ids in encode_prompts(tok, prompts))
    gens = generate(model, tok, prompts, max_new_tokens=50, seed=0, max_length=longest + 2)
    assert all(g.num_tokens <= 2 for g in gens)
    with pytest.raises(StyleGRPOError, match="no room"):
        generate(model, tok, prompts, max_new_tokens=5, max_length=longest)


def test_adapter_on_top_and_merged(policy, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    from stylegrpo.tiny import resolve_model

    base, tok = policy
    torch.manual_seed(0)
    lora = get_peft_model(
        load_policy("tiny:llasa", "cpu")[0],
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([encode_prompts(tok, [TEMPLATE.render("Hello there")])[0]])
    with torch.no_grad():
        base_logits = base(ids).logits
        on_top, _ = load_policy("tiny:llasa", "cpu", adapter=tmp_path / "adapter")
        assert isinstance(on_top, PeftModel)
        top_logits = on_top(ids).logits
        merged, _ = load_policy(resolve_model("tiny:llasa"), "cpu", adapter=tmp_path / "adapter", merge=True)
        assert not isinstance(merged, PeftModel)
        merged_logits = merged(ids).logits
    assert (top_logits - base_logits).abs().max() > 1e-3  # LoRA B is non-zero: the adapter changes outputs
    torch.testing.assert_close(merged_logits, top_logits, atol=1e-4, rtol=1e-4)
    with on_top.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(on_top(ids).logits, base_logits)


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(StyleGRPOError, match="not a PEFT adapter"):
        load_policy("tiny:llasa", "cpu", adapter=tmp_path)
    with pytest.raises(StyleGRPOError, match="cannot load"):
        load_policy(str(tmp_path / "missing-model"), "cpu")
