"""Generation: greedy equals transformers' ``generate`` token for token; the KV cache and the full
recompute agree; a padded batch equals one prompt at a time; sampling filters match transformers'."""

from __future__ import annotations

import pytest
import torch

from .conftest import VOCAB, hf_model

PROMPT_LENGTHS = (5, 11, 8)


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen3", "mistral-window", "phi3", "gemma2", "gemma3", "mixtral",
                                              "qwen3_moe"])
def converted(request, tmp_path_factory, megatron):
    """(transformers model, our LoadedModel of the same weights): RoPE and learned positions, q/k norms,
    a sliding window shorter than prompt + output."""
    import sft_model

    d = tmp_path_factory.mktemp(request.param)
    hf = hf_model(request.param, seed=3)
    hf.save_pretrained(d / "hf")
    return hf, sft_model.load_nemo(sft_model.hf_to_nemo(d / "hf", d / "m.nemo"))


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(7)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def test_greedy_equals_transformers_generate(converted, prompts):
    from sft_model.generate import generate
    from sft_model.sampling import SamplingParams

    hf, loaded = converted
    eos = 2
    for prompt in prompts:
        with torch.no_grad():
            expected = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=0)
        expected = expected[0, len(prompt):].tolist()
        ours = generate(loaded, [prompt], SamplingParams(max_new_tokens=16), stop_ids=[eos])[0]
        if eos in expected:  # transformers keeps the stop token, we report it as the reason
            assert ours.finish_reason == "stop" and ours.tokens == expected[: expected.index(eos)]
        else:
            assert ours.finish_reason == "length" and ours.tokens == expected


def test_kv_cache_and_full_recompute_agree(converted, prompts):
    from sft_model.generate import generate
    from sft_model.sampling import SamplingParams

    _, loaded = converted
    params = SamplingParams(max_new_tokens=12, repetition_penalty=1.3)
    cached = generate(loaded, prompts, params)
    recomputed = generate(loaded, prompts, params, use_cache=False)
    assert [g.tokens for g in cached] == [g.tokens for g in recomputed]
    assert all(len(g.tokens) == 12 for g in cached)


def test_batched_equals_one_at_a_time(converted, prompts):
    """Left padding changes nothing, for greedy and for seeded sampling; rows stop independently."""
    from sft_model.generate import generate
    from sft_model.sampling import SamplingParams

    _, loaded = converted
    greedy = SamplingParams(max_new_tokens=10)
    single = [generate(loaded, [p], greedy)[0].tokens for p in prompts]
    assert [g.tokens for g in generate(loaded, prompts, greedy)] == single
    # Stop the middle row early through the stop check: the others must not notice.
    stopped = generate(loaded, prompts, greedy, stop=lambda row, ids: row == 1 and len(ids) == 3)
    assert stopped[1].tokens == single[1][:3] and stopped[1].finish_reason == "stop"
    assert [stopped[0].tokens, stopped[2].tokens] == [single[0], single[2]]

    sampling = SamplingParams(max_new_tokens=10, greedy=False, temperature=1.5, top_k=40, top_p=0.95)
    seeds = [11, 12, 13]
    batched = generate(loaded, prompts, sampling, seeds=seeds)
    alone = [generate(loaded, [p], sampling, seeds=[s])[0].tokens for p, s in zip(prompts, seeds, strict=True)]
    assert [g.tokens for g in batched] == alone
    assert [g.tokens for g in generate(loaded, prompts, sampling, seeds=[1, 2, 3])] != alone


def test_streaming_callback_sees_every_kept_token(converted, prompts):
    from sft_model.generate import generate
    from sft_model.sampling import SamplingParams

    _, loaded = converted
    seen: dict[int, list[int]] = {0: [], 1: []}
    out = generate(loaded, prompts[:2], SamplingParams(max_new_tokens=6), on_token=lambda r, t: seen[r].append(t))
    assert [seen[0], seen[1]] == [g.tokens for g in out]


def test_sampling_filters_match_transformers():
    import transformers.generation.logits_process as lp
    from sft_model.sampling import SamplingParams, filter_logits, penalize_repetitions

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    history = torch.randint(0, 50, (3, 9))
    theirs = lp.RepetitionPenaltyLogitsProcessor(1.7)(history, logits.clone())
    ours = penalize_repetitions(logits, history, torch.ones_like(history, dtype=torch.bool), 1.7)
    assert torch.allclose(ours, theirs)

    params = SamplingParams(greedy=False, temperature=0.7, top_k=20, top_p=0.8)
    expected = lp.TopPLogitsWarper(0.8)(None, lp.TopKLogitsWarper(20)(None, lp.TemperatureLogitsWarper(0.7)(
        None, logits.clone())))
    assert torch.equal(filter_logits(logits, params).isinf(), expected.isinf())


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(greedy=False, temperature=-0.5), dict(top_p=0.0),
                                 dict(top_k=-1), dict(repetition_penalty=0.0)])
def test_bad_sampling_settings_are_model_errors(bad):
    from sft_model.errors import ModelError
    from sft_model.sampling import SamplingParams

    with pytest.raises(ModelError):
        SamplingParams(**bad)


def test_temperature_zero_is_greedy():
    from sft_model.sampling import SamplingParams, next_tokens

    params = SamplingParams(greedy=False, temperature=0.0, top_k=3)
    assert params.greedy
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(next_tokens(logits, params), logits.argmax(-1))
