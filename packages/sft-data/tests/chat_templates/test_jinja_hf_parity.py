"""Parity with transformers: ids and assistant masks equal ``apply_chat_template``'s.

transformers is a test-only dependency here; sft_data never imports it. Both sides render the
conversation once and encode the whole text in one call; the tokenizers are tiny BPEs: byte-level
(GPT-2 / Llama 3 / Qwen style) and Metaspace with ``prepend_scheme="first"`` (Llama 2 / Mistral
style), where encoding the text piece by piece would put a ``▁`` at the start of every piece.

Mask convention: transformers' ``assistant_masks[j]`` is 1 when token ``j`` belongs to a generation
span; our ``loss_mask[j]`` is True when *predicting* token ``j`` is trained (types.py). Both describe
token ``j`` itself, so after the shift both become the label mask — they are equal element for
element, except that our ``loss_mask[0]`` is always False (nothing predicts the first token). The
conversations below start with a template token, where transformers' mask is 0 too, which the test
asserts before comparing the whole lists.
"""

from __future__ import annotations

import pytest
import transformers  # a dev dependency (uv sync installs it); sft_data itself never imports it
from sft_data.encoding import ChatEncoder
from sft_data.templates.jinja import JinjaChatTemplate
from sft_data.templates.resolve import CHATML_SOURCE, LLAMA3_SOURCE
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
from sft_data.types import Conversation, Turn

# A Zephyr-like template: BOS printed by the template, eos_token ending each assistant turn, the
# generation block spanning the answer, its eos and the newline after it.
ZEPHYR_LIKE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token + '\\n' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '</s>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
ZEPHYR_SPECIALS = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]

CONVERSATIONS = [
    Conversation((Turn("user", "Hello!"), Turn("assistant", "How can I help you today?"))),
    Conversation(
        (Turn("user", "What is two plus two?"), Turn("assistant", "Two plus two is four."),
         Turn("user", "Thanks a lot!"), Turn("assistant", "Sure, be nice.")),
        system="You are a helpful assistant.",
    ),
    Conversation((Turn("user", "Réponse, café ✓"), Turn("assistant", "Très bien — 好的 🙂"))),
    Conversation((Turn("user", "brief"), Turn("assistant", ""), Turn("user", "more please"))),
    # multi-turn: five exchanges, whitespace at the edges, newlines and tabs inside, a long answer
    Conversation(
        (Turn("user", "  Hello!  "), Turn("assistant", " How can I help you today? "),
         Turn("user", "What is two plus two?\nAnd three?"), Turn("assistant", "Two plus two is four.\n\nThree: 5."),
         Turn("user", "\tthe quick brown fox"), Turn("assistant", "jumps over the lazy dog. " * 12),
         Turn("user", "Thanks a lot!"), Turn("assistant", "Sure, here it is."),
         Turn("user", "More please."), Turn("assistant", "Be nice and brief.")),
        system="You are a helpful assistant.\nBe brief.",
    ),
    Conversation(
        (Turn("user", "system user assistant"), Turn("assistant", "tool: the fox."), Turn("user", "Again?"),
         Turn("assistant", "Hello! Hello!"), Turn("user", "ok")),
        system="Be nice.",
    ),
]


def _hf_pair(directory, source, bos, eos):
    ours = HuggingFaceTokenizer(directory)
    theirs = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"), bos_token=bos, eos_token=eos
    )
    return ours, theirs


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("case", range(len(CONVERSATIONS)))
@pytest.mark.parametrize(
    ("source", "bos", "eos", "specials"),
    [
        (ZEPHYR_LIKE, "<s>", "</s>", ZEPHYR_SPECIALS),
        (CHATML_SOURCE, "<s>", "<|im_end|>", None),
        (LLAMA3_SOURCE, "<|begin_of_text|>", "<|eot_id|>", None),
    ],
    ids=["zephyr-like", "chatml", "llama3"],
)
@pytest.mark.parametrize("model", ["byte-level", "metaspace"])
def test_ids_and_masks_equal_transformers(
    make_hf_tokenizer, source, bos, eos, specials, case, add_generation_prompt, model
):
    kwargs = {"specials": specials} if specials else {}
    directory = make_hf_tokenizer(config={"bos_token": bos, "eos_token": eos}, metaspace=model == "metaspace",
                                  **kwargs)
    ours, theirs = _hf_pair(directory, source, bos, eos)
    conversation = CONVERSATIONS[case]

    segments = JinjaChatTemplate(source).render(conversation, ours, add_generation_prompt=add_generation_prompt)
    sample = ChatEncoder(ours).encode(segments)

    messages = ([{"role": "system", "content": conversation.system}] if conversation.system else []) + [
        {"role": t.role, "content": t.content} for t in conversation.turns
    ]
    out = theirs.apply_chat_template(
        messages, chat_template=source, add_generation_prompt=add_generation_prompt,
        tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
    )
    assert sample.input_ids == list(out["input_ids"])
    hf_mask = [bool(m) for m in out["assistant_masks"]]
    assert hf_mask[0] is False  # a template token starts every conversation (see the docstring)
    assert sample.loss_mask == hf_mask
    assert any(hf_mask)


def test_metaspace_whole_text_differs_from_piece_by_piece(make_hf_tokenizer):
    # Why one pass matters: after a special token, HF does not prepend "▁" (the text is not at offset
    # 0); an encoder that tokenized each piece apart would, and disagree with inference.
    directory = make_hf_tokenizer(config={"eos_token": "<|im_end|>"}, metaspace=True)
    ours, theirs = _hf_pair(directory, CHATML_SOURCE, "<s>", "<|im_end|>")
    conversation = CONVERSATIONS[0]
    sample = ChatEncoder(ours).encode(JinjaChatTemplate(CHATML_SOURCE).render(conversation, ours))
    text = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHow can I help you today?<|im_end|>\n"
    assert sample.input_ids == theirs(text, add_special_tokens=False)["input_ids"]
    alone = ours.encode("user\nHello!")
    assert alone[0] == ours.token_to_id("\u2581user") or ours.id_to_piece(alone[0]).startswith("\u2581")
    assert sample.input_ids[1:1 + len(alone)] != alone
