"""Exact token-level masks of the built-in ``chatml`` and ``llama3`` templates, checked by hand.

With the character tokenizer every control string is one id and every other character one id,
so each expected (ids, mask) pair below is the rendered text written out piece by piece.
"""

from __future__ import annotations

from sft_data.encoding import ChatEncoder
from sft_data.templates.resolve import chatml_template, llama3_template
from sft_data.types import Conversation, Turn

U, A = "user", "assistant"
IM_S, IM_E = "<|im_start|>", "<|im_end|>"
BOT, SH, EH, EOT = "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"


def encode(template, conversation, tokenizer, **kwargs):
    sample = ChatEncoder(tokenizer).encode(template.render(conversation, tokenizer, **kwargs))
    return sample.input_ids, sample.loss_mask


def test_chatml_multi_turn_with_system(char_tok, expect):
    conv = Conversation((Turn(U, "Hi"), Turn(A, "Hello!"), Turn(U, "More"), Turn(A, "Sure")), system="Be nice")
    assert encode(chatml_template(), conv, char_tok) == expect([
        (IM_S, False), ("system\nBe nice", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("user\nHi", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\n", False), ("Hello!", True), (IM_E, True), ("\n", False),
        (IM_S, False), ("user\nMore", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\n", False), ("Sure", True), (IM_E, True), ("\n", False),
    ])


def test_chatml_generation_prompt_and_no_system(char_tok, expect):
    conv = Conversation((Turn(U, "Hi"), Turn(A, "Yo"), Turn(U, "Again")))
    assert encode(chatml_template(), conv, char_tok, add_generation_prompt=True) == expect([
        (IM_S, False), ("user\nHi", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\n", False), ("Yo", True), (IM_E, True), ("\n", False),
        (IM_S, False), ("user\nAgain", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\n", False),
    ])


def test_chatml_weight_zero_turn_is_context(char_tok, expect):
    conv = Conversation((Turn(U, "a"), Turn(A, "b", trained=False), Turn(U, "c"), Turn(A, "d")))
    assert encode(chatml_template(), conv, char_tok) == expect([
        (IM_S, False), ("user\na", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\nb", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("user\nc", False), (IM_E, False), ("\n", False),
        (IM_S, False), ("assistant\n", False), ("d", True), (IM_E, True), ("\n", False),
    ])


def test_llama3_multi_turn_with_system_single_bos(llama_char_tok, expect):
    # Contents are trimmed by the template; the BOS comes from the template only, once.
    conv = Conversation((Turn(U, " Hi "), Turn(A, "  Hello!\n"), Turn(U, "More"), Turn(A, "Sure")), system="Be nice")
    ids, mask = encode(llama3_template(), conv, llama_char_tok)
    assert (ids, mask) == expect([
        (BOT, False),
        (SH, False), ("system", False), (EH, False), ("\n\nBe nice", False), (EOT, False),
        (SH, False), ("user", False), (EH, False), ("\n\nHi", False), (EOT, False),
        (SH, False), ("assistant", False), (EH, False), ("\n\n", False), ("Hello!", True), (EOT, True),
        (SH, False), ("user", False), (EH, False), ("\n\nMore", False), (EOT, False),
        (SH, False), ("assistant", False), (EH, False), ("\n\n", False), ("Sure", True), (EOT, True),
    ])
    assert ids.count(llama_char_tok.bos_id) == 1


def test_llama3_generation_prompt(llama_char_tok, expect):
    conv = Conversation((Turn(U, "Hi"),))
    assert encode(llama3_template(), conv, llama_char_tok, add_generation_prompt=True) == expect([
        (BOT, False), (SH, False), ("user", False), (EH, False), ("\n\nHi", False), (EOT, False),
        (SH, False), ("assistant", False), (EH, False), ("\n\n", False),
    ])


def test_chatml_on_a_real_bpe_tokenizer(make_hf_tokenizer):
    # Token by token on a byte-level BPE: the trained tokens decode to exactly each answer and its
    # <|im_end|>, and every control string is one special id.
    from sft_data.tokenizers.huggingface import HuggingFaceTokenizer

    tok = HuggingFaceTokenizer(make_hf_tokenizer(config={"eos_token": "<|im_end|>"}))
    conv = Conversation((Turn(U, "What is two plus two?"), Turn(A, "Two plus two is four."),
                         Turn(U, "Thanks"), Turn(A, "Sure!")))
    ids, mask = encode(chatml_template(), conv, tok)
    trained_runs, run = [], []
    for token, trained in zip(ids, mask, strict=True):
        if trained:
            run.append(token)
        elif run:
            trained_runs.append(tok.decode(run))
            run = []
    assert trained_runs == ["Two plus two is four.<|im_end|>", "Sure!<|im_end|>"]
    im_start, im_end = tok.token_to_id(IM_S), tok.token_to_id(IM_E)
    assert ids.count(im_start) == 4 and ids.count(im_end) == 4
    assert tok.decode(ids) == (
        "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\nTwo plus two is four.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\nSure!<|im_end|>\n"
    )
