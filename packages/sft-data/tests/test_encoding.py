"""One-pass chat encoding: the character-offset mask rule, joining segments, the piece-wise fallback."""

from __future__ import annotations

import numpy as np
import pytest
from sft_data.encoding import ChatEncoder, trained_tokens
from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer
from sft_data.types import RenderedChat, Segment


def mask(offsets, spans):
    return trained_tokens(np.asarray(offsets, dtype=np.int64).reshape(-1, 2), spans).tolist()


def test_a_token_with_any_character_in_a_trained_span_is_trained():
    # span [3, 7): "ab|c de|f" — tokens straddling either edge are trained, the ones outside are not
    offsets = [(0, 2), (2, 5), (5, 7), (7, 9)]
    assert mask(offsets, [(3, 7)]) == [False, True, True, False]
    assert mask(offsets, [(0, 1), (8, 9)]) == [True, False, False, True]
    assert mask(offsets, [(2, 3), (5, 6)]) == [False, True, True, False]
    assert mask(offsets, []) == [False] * 4


def test_a_token_covering_no_character_belongs_to_the_character_after_it():
    # zero-width tokens: a dummy-prefix "▁" or the first byte piece of a split character
    offsets = [(3, 3), (3, 4), (5, 5), (7, 7), (9, 9)]
    assert mask(offsets, [(3, 7)]) == [True, True, True, False, False]
    assert mask(offsets, [(4, 6), (9, 10)]) == [False, False, True, False, True]


def test_from_segments_joins_segments_and_merges_adjacent_trained_spans():
    segments = [Segment("<s>", special=True), Segment("Q: hi\n"), Segment("", trained=True),
                Segment("yo", trained=True), Segment("</s>", trained=True, special=True), Segment("\n")]
    rendered = RenderedChat.from_segments(segments, open_end=True)
    assert rendered.text == "<s>Q: hi\nyo</s>\n"
    assert rendered.trained == ((9, 15),)
    assert rendered.controls == ((0, 3), (11, 15))
    assert rendered.open_end


class MergingTokenizer:
    """No offsets API: "ab" is one token, every other character one token; "<c>" a control token."""

    kind = "merging"
    bos_token = eos_token = None

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                ids.append(1)
                i += 2
            else:
                ids.append(100 + ord(text[i]))
                i += 1
        return ids

    def token_to_id(self, token):
        return 2 if token == "<c>" else None


def test_a_tokenizer_without_offsets_is_encoded_piece_by_piece_with_exact_masks():
    segments = [Segment("<c>", special=True), Segment("xa"), Segment("by", trained=True),
                Segment("<c>", trained=True, special=True)]
    sample = ChatEncoder(MergingTokenizer()).encode(segments)
    # "a|b" across the trained edge is not merged: each piece is encoded on its own
    assert sample.input_ids == [2, 100 + ord("x"), 100 + ord("a"), 100 + ord("b"), 100 + ord("y"), 2]
    assert sample.loss_mask == [False, False, False, True, True, True]


def test_sentencepiece_ids_equal_a_whole_text_encoding_and_offsets_cover_the_text(sp_tokenizer_path):
    tok = SentencePieceTokenizer(sp_tokenizer_path)
    texts = ["Hello world, café ✓ 好\nsecond  line", "", "plain"]
    encoded = tok.encode_with_controls(texts, [(), (), ()], [False, False, False])
    for text, (ids, offsets) in zip(texts, encoded, strict=True):
        assert list(ids) == tok.encode(text)
        assert len(offsets) == len(ids)
        assert all(0 <= s <= e <= len(text) for s, e in offsets.tolist())


@pytest.mark.parametrize("open_end", [False, True])
def test_sentencepiece_control_cuts_follow_the_legacy_wrapper(sp_tokenizer_path, open_end):
    import sentencepiece as spm

    tok = SentencePieceTokenizer(sp_tokenizer_path)
    sp = spm.SentencePieceProcessor(model_file=str(sp_tokenizer_path))
    ctrl = "<extra_id_1>"
    text = f"User\n{ctrl}User\nhi\n{ctrl}User"
    spans = [(5, 5 + len(ctrl)), (len(text) - 4 - len(ctrl), len(text) - 4)]
    (ids, offsets), = tok.encode_with_controls([text], [spans], [open_end])
    user = sp.encode("User")
    assert user[0] == sp.piece_to_id("▁")  # a bare dummy prefix: what the legacy wrapper trims
    middle = sp.encode("User\nhi\n")[1:]  # between two control strings: trimmed
    tail = user[1:] if open_end else user  # the last run is trimmed only when an answer follows it
    cid = sp.piece_to_id(ctrl)
    assert ids == [*sp.encode("User\n"), cid, *middle, cid, *tail]
    assert offsets.tolist()[len(sp.encode("User\n"))] == [5, 17]
