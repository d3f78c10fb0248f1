"""Prompt-response samples: template pieces, masks, BOS/EOS/SEP and the reference's truncation."""

from __future__ import annotations

import pytest
from sft_data.config import DataConfig
from sft_data.errors import SftError
from sft_data.formats.prompt_response import PromptResponseFormat
from sft_data.registries import DataRegistries
from sft_data.samples import SampleBuilder

EOS = 5
BOS = 4


def build(record, tokenizer, **config):
    cfg = DataConfig(**config)
    return SampleBuilder(cfg, tokenizer, PromptResponseFormat(), DataRegistries.from_plugin_manager()).build(record)


def chars(tok, text):
    return tok.encode(text)


def test_default_template_answer_only_mask_trains_answer_and_eos(char_tokenizer):
    built = build({"input": "hi", "output": "yo"}, char_tokenizer)
    ids = chars(char_tokenizer, "hi") + chars(char_tokenizer, " yo") + [EOS]
    assert built.sample.input_ids == ids
    # answer_start = 2: " yo" and EOS are trained targets
    assert built.sample.loss_mask == [False, False, True, True, True, True]


def test_full_loss_trains_everything_but_the_first_token(char_tokenizer):
    built = build({"input": "hi", "output": "yo"}, char_tokenizer, answer_only_loss=False)
    assert built.sample.loss_mask == [False] + [True] * 5


def test_bos_sep_and_values_stripped_of_spaces(char_tokenizer):
    built = build({"input": "  hi ", "output": " yo"}, char_tokenizer, add_bos=True, add_sep=True, sep_id=9)
    ids = [BOS] + chars(char_tokenizer, "hi") + [9] + chars(char_tokenizer, " yo") + [EOS]
    assert built.sample.input_ids == ids
    assert built.sample.loss_mask == [False] * 4 + [True] * 4


def test_template_with_escapes_and_non_ascii_and_several_fields(char_tokenizer):
    built = build(
        {"context": "ctx", "question": "q?", "answer": "Réponse"},
        char_tokenizer,
        prompt_template="C: {context}\\nQ: {question}\\nA: {answer}",
        label_key="answer",
        truncation_field="context",
    )
    text = char_tokenizer.decode(built.sample.input_ids[:-1])
    assert text == "C: ctx\nQ: q?\nA: Réponse"
    trained = char_tokenizer.decode([i for i, m in zip(built.sample.input_ids, built.sample.loss_mask, strict=True) if m])
    assert trained == " Réponse</s>"


def test_sentencepiece_style_pieces_drop_one_leading_space(sp_tokenizer_path):
    from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer

    tok = SentencePieceTokenizer(sp_tokenizer_path)
    built = build({"input": "What is 2 plus 3?", "output": "2 plus 3 is 5."}, tok)
    ids = tok.encode("What is 2 plus 3?") + tok.encode("2 plus 3 is 5.") + [tok.eos_id]
    assert built.sample.input_ids == ids


@pytest.mark.parametrize(("method", "kept"), [("right", "ab"), ("left", "gh")])
def test_truncation_shortens_the_truncation_field(char_tokenizer, method, kept):
    built = build({"input": "abcdefgh", "output": "xy"}, char_tokenizer, max_seq_length=6, truncation_method=method)
    assert built.sample.input_ids == chars(char_tokenizer, kept + " xy") + [EOS]
    assert built.sample.truncated
    assert built.sample.loss_mask == [False, False, True, True, True, True]


def test_overflow_split_evenly_over_truncation_fields(char_tokenizer):
    built = build(
        {"a": "aaaaa", "b": "bbbbb", "output": "o"},
        char_tokenizer,
        prompt_template="{a}{b}{output}",
        truncation_field="a,b",
        max_seq_length=8,
    )
    # total 5+5+1+1(eos)=12, overflow 4 -> 2 from each field
    assert char_tokenizer.decode(built.sample.input_ids) == "aaabbbo</s>"


def test_right_truncation_can_eat_the_answer_and_then_the_sample_is_dropped(char_tokenizer):
    built = build({"input": "ab", "output": "xyz"}, char_tokenizer, max_seq_length=2, add_eos=False)
    # input cut to nothing, then whole pieces from the right: " xyz" loses 2 -> " x"
    assert char_tokenizer.decode(built.sample.input_ids) == " x"
    assert built.dropped is None
    built = build({"input": "ab", "output": "x"}, char_tokenizer, max_seq_length=2, truncation_field="", add_eos=False)
    assert char_tokenizer.decode(built.sample.input_ids) == "ab"
    assert built.dropped == "no trained tokens left after truncation"


def test_label_placeholder_must_be_last():
    with pytest.raises(SftError, match="must end with the label placeholder"):
        from sft_data.templates.prompt_response import PromptTemplate

        PromptTemplate.parse("{output} {input}", "output", True)


def test_missing_and_wrongly_typed_fields(char_tokenizer):
    from sft_data.errors import RecordError

    with pytest.raises(RecordError, match="missing field 'output'"):
        build({"input": "a"}, char_tokenizer)
    with pytest.raises(RecordError, match="field 'input' must be a string, got number"):
        build({"input": 1, "output": "a"}, char_tokenizer)
