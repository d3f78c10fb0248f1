"""Benchmark: packing efficiency and throughput on chat-length data vs. the padded baselines.

    uv run python bench/prepare.py [--samples 20000] [--pack-size 2048] [--e2e-samples 20000]

Prints one JSON object:

- ``lengths``: the synthetic distribution (lognormal, clipped to 50..4000 token ids, truncated to
  ``max_seq_length = pack_size`` as ``sft prepare`` would).
- ``padded_baseline``: efficiency (real positions / computed positions) of padding every sample
  to ``max_seq_length``, and of per-micro-batch padding (longest in the batch rounded up to 16,
  the reference's collate) for a few micro-batch sizes, random order.
- ``packing``: per algorithm, efficiency, bins, sequences per bin, packing throughput and
  pack + write (``write_prepared``) throughput in samples/s.
- ``trl``: TRL's ``pack_dataset`` (bfd) on the same lengths, side by side with ``packing``, when
  ``trl`` is installed (``uv sync --group bench``; never installed by default), else "not installed".
- ``end_to_end``: NeMo chat JSONL -> ``sft_data.prepare.prepare`` (read, template, tokenize, pack,
  write) with a SentencePiece tokenizer trained on examples/data/corpus.txt.
- ``chat_template``: multi-turn chats through a ChatML-style Jinja template with ``{% generation %}``
  markers and a byte-level BPE (``tokenizers``, trained here on the repository's text, 49k vocabulary
  asked), side by side in this process: transformers' ``apply_chat_template`` (tokenize, with and
  without ``return_assistant_tokens_mask``; all conversations in one call, and one call per
  conversation as ``datasets.map`` pipelines make them) and ours (``SampleBuilder.build_many``:
  parse, render, encode, mask). ``speedup`` is transformers' seconds over ours, each the best of
  ``--repeats`` interleaved runs; ``identical`` says whether ids and masks agree on every
  conversation. Both sides spend most of their time in the same Rust ``encode_batch``.

- ``workers``: ``prepare`` with 1 and with 2 worker processes on the same files, run alternately
  ``--worker-repeats`` times (best and median wall time, the speedups of both, CPU seconds of the
  process and its workers, whether the two outputs are the same bytes, the load average around the
  runs; other jobs on the machine slow some runs down, hence the repeats): NeMo chat through a SentencePiece model, and OpenAI messages
  through a ChatML Jinja template and a byte-level BPE. One worker encodes on one thread, as each
  of several workers does.

Positions are what a model computes: a sample of L ids fills L - 1 (tokens = ids[:-1]).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
from sft_data.packing.plan import pack_samples
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample

ROOT = Path(__file__).resolve().parent.parent


def chat_lengths(n: int, seed: int, max_seq_length: int) -> tuple[np.ndarray, int]:
    """Token-id counts of chat samples: lognormal (median ~600), clipped to 50..4000, truncated."""
    raw = np.clip(np.random.default_rng(seed).lognormal(np.log(600), 0.8, n), 50, 4000).astype(np.int64)
    return np.minimum(raw, max_seq_length), int((raw > max_seq_length).sum())


def padded_baselines(positions: np.ndarray, max_seq_length: int, seed: int) -> dict:
    real = int(positions.sum())
    result = {
        "pad_to_max_seq_length": real / (len(positions) * max_seq_length),
        "mean_real_positions_per_row_unpacked": float(positions.mean()),
    }
    shuffled = np.random.default_rng(seed).permutation(positions)
    for mbs in (1, 4, 8, 16):
        usable = len(shuffled) // mbs * mbs
        rows = shuffled[:usable].reshape(-1, mbs)
        padded = np.minimum(-(-rows.max(axis=1) // 16) * 16, max_seq_length) * mbs
        result[f"per_batch_padding_mbs{mbs}"] = int(rows.sum()) / int(padded.sum())
    return result


def synthetic_samples(lengths: np.ndarray) -> list[TokenizedSample]:
    # small ids are interned ints, so 20k samples stay cheap in memory; values do not affect timing
    return [
        TokenizedSample((np.arange(n) % 250 + 1).tolist(), [False] * (n // 3) + [True] * (n - n // 3))
        for n in lengths.tolist()
    ]


def bench_packing(lengths: np.ndarray, pack_size: int, seed: int, workdir: Path) -> dict:
    samples = synthetic_samples(lengths)
    results = {}
    for algorithm in BUILTIN_ALGORITHMS:
        start = time.perf_counter()
        bins, stats = pack_samples(samples, pack_size, algorithm, seed)
        pack_s = time.perf_counter() - start
        start = time.perf_counter()
        write_prepared(workdir / algorithm.name, samples, bins=bins, pack_size=pack_size,
                       header={"packing": {"algorithm": algorithm.name, "seed": seed}})
        write_s = time.perf_counter() - start
        results[algorithm.name] = {
            "efficiency": round(stats["efficiency"], 5),
            "bins": stats["bins"],
            "sequences_per_bin": {k: round(v, 3) for k, v in stats["sequences_per_bin"].items()},
            "mean_real_positions_per_row": round(float(lengths.sum() - len(lengths)) / stats["bins"], 1),
            "pack_seconds": round(pack_s, 3),
            "pack_samples_per_s": round(len(samples) / pack_s),
            "pack_and_write_samples_per_s": round(len(samples) / (pack_s + write_s)),
        }
    return results


def bench_trl(lengths: np.ndarray, pack_size: int) -> dict | str:
    try:
        from datasets import Dataset
        from trl import pack_dataset
    except ImportError:
        return "not installed (uv sync --group bench)"
    dataset = Dataset.from_dict({"input_ids": [[1] * (n - 1) for n in lengths.tolist()]})
    start = time.perf_counter()
    packed = pack_dataset(dataset, pack_size, strategy="bfd")
    seconds = time.perf_counter() - start
    return {
        "strategy": "bfd",
        "efficiency": round(int((lengths - 1).sum()) / (len(packed) * pack_size), 5),
        "bins": len(packed),
        "samples_per_s": round(len(lengths) / seconds),
    }


def chat_records(lengths: np.ndarray, seed: int, tokens_per_word: float) -> list[dict]:
    """NeMo chat conversations of 1-4 exchanges whose rendered length tracks ``lengths``."""
    rng = np.random.default_rng(seed)
    words = (ROOT / "examples/data/corpus.txt").read_text(encoding="utf-8").split()
    records = []
    for n in lengths.tolist():
        turns = int(rng.integers(1, 5))
        per_message = max(2, int(n / tokens_per_word / (2 * turns)))
        conversation = []
        for _ in range(turns):
            for speaker in ("User", "Assistant"):
                text = " ".join(words[i] for i in rng.integers(0, len(words), per_message))
                conversation.append({"from": speaker, "value": text})
        records.append({"system": "You are a helpful assistant.", "mask": "User", "conversations": conversation})
    return records


def bench_end_to_end(lengths: np.ndarray, pack_size: int, seed: int, workdir: Path) -> dict | str:
    try:
        from sft_data.config import DataConfig
        from sft_data.prepare import prepare
        from sft_data.tokenizers.loading import load_tokenizer
        from sft_data.tokenizers.training import train_sentencepiece
    except ImportError as exc:
        return f"sft_data.prepare unavailable ({exc}); packing + writing only above"
    model = train_sentencepiece([ROOT / "examples/data/corpus.txt"], workdir / "tok.model", 2000)
    tokenizer = load_tokenizer(model)
    sample_text = (ROOT / "examples/data/corpus.txt").read_text(encoding="utf-8")[:20000]
    tokens_per_word = len(tokenizer.encode(sample_text)) / len(sample_text.split())
    path = workdir / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chat_records(lengths, seed, tokens_per_word)))
    config = DataConfig(max_seq_length=pack_size, pack_size=pack_size, seed=seed)
    start = time.perf_counter()
    try:
        result = prepare([path], tokenizer, config, output=workdir / "prepared")
    except Exception as exc:  # a benchmark reports what broke instead of hiding the other figures
        return f"prepare failed: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    stats = result.stats
    return {
        "samples": stats["samples"],
        "tokens": stats["tokens"],
        "truncated": stats["truncated"],
        "length_percentiles": stats["length_percentiles"],
        "packing": stats["packing"],
        "seconds": round(seconds, 2),
        "samples_per_s": round(stats["samples"] / seconds),
        "tokens_per_s": round(stats["tokens"] / seconds),
    }


CHATML_MARKED = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def repo_text() -> list[str]:
    import subprocess

    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    lines: list[str] = []
    for name in names:
        if name.endswith((".py", ".md", ".txt", ".yaml")):
            lines += (ROOT / name).read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if line.strip()]


def build_bpe(directory: Path, lines: list[str], vocab_size: int) -> Path:
    """A byte-level BPE (GPT-2 / Qwen style) with ChatML control tokens, as a Hub tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML_MARKED}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def chat_conversations(lines: list[str], n: int, seed: int, words_per_message: int) -> list[list[dict]]:
    """``n`` chats of 2-6 exchanges (a system prompt on half of them), messages cut from ``lines``.

    Words holding ``<|`` are left out: a control string typed in a message is deliberately encoded
    as text here (transformers turns it into the control id), so those would not compare equal; so
    are think tags (an empty ``<think></think>`` is never trained here, transformers trains it).
    """
    rng = np.random.default_rng(seed)
    words = [w for w in " ".join(lines).split() if "<|" not in w and "think>" not in w]
    chats = []
    for i in range(n):
        messages = [{"role": "system", "content": "You are a helpful assistant."}] if i % 2 else []
        for _ in range(int(rng.integers(2, 7))):
            for role in ("user", "assistant"):
                count = max(1, int(rng.normal(words_per_message, words_per_message / 3)))
                start = int(rng.integers(0, len(words) - count))
                messages.append({"role": role, "content": " ".join(words[start:start + count])})
        chats.append(messages)
    return chats


def best_of(repeats: int, runs: dict) -> dict[str, tuple[float, object]]:
    """Each run's best wall time of ``repeats``, the runs interleaved so load from other processes
    falls on all of them alike."""
    best = {name: (float("inf"), None) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            out = run()
            best[name] = (min(best[name][0], time.perf_counter() - start), out)
    return best


def bench_chat_template(workdir: Path, conversations: int, seed: int, repeats: int) -> dict | str:
    try:
        import transformers
    except ImportError:
        return "transformers not installed"
    from sft_core import get_plugin_manager
    from sft_data.config import DataConfig
    from sft_data.formats.messages import MessagesFormat
    from sft_data.registries import DataRegistries
    from sft_data.samples import SampleBuilder
    from sft_data.tokenizers.huggingface import HuggingFaceTokenizer

    lines = repo_text()
    start = time.perf_counter()
    directory = build_bpe(workdir / "bpe", lines, 49_152)
    train_s = time.perf_counter() - start
    chats = chat_conversations(lines, conversations, seed, words_per_message=47)
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"),
                                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ours = HuggingFaceTokenizer(directory)
    builder = SampleBuilder(DataConfig(max_seq_length=1 << 20), ours, MessagesFormat(),
                            DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False)))
    records = [({"messages": chat}, f"chat:{i}") for i, chat in enumerate(chats)]

    def transformers_run(masks: bool, conversations):
        return theirs.apply_chat_template(conversations, chat_template=CHATML_MARKED, tokenize=True,
                                          return_dict=True, return_assistant_tokens_mask=masks)

    timed = best_of(repeats, {
        "masks": lambda: transformers_run(True, chats),
        "ids": lambda: transformers_run(False, chats),
        # one call per conversation, as a datasets.map(batched=False) pipeline (TRL's) makes them
        "per_conversation": lambda: [transformers_run(True, [chat]) for chat in chats],
        "ours": lambda: builder.build_many(records),
    })
    (hf_mask_s, hf), (hf_plain_s, _), (ours_s, built) = timed["masks"], timed["ids"], timed["ours"]
    hf_single_s = timed["per_conversation"][0]
    tokens = sum(len(b.sample.input_ids) for b in built)
    identical = all(
        b.sample.input_ids == list(ids) and b.sample.loss_mask[1:] == [bool(m) for m in mask[1:]]
        for b, ids, mask in zip(built, hf["input_ids"], hf["assistant_masks"], strict=True)
    )
    return {
        "conversations": conversations,
        "messages": sum(len(c) for c in chats),
        "tokens": tokens,
        "vocab_size": ours.vocab_size,
        "tokenizer_train_seconds": round(train_s, 2),
        "repeats": repeats,
        "transformers_seconds": {"with_assistant_masks": round(hf_mask_s, 3), "ids_only": round(hf_plain_s, 3),
                                 "with_assistant_masks_one_call_per_conversation": round(hf_single_s, 3)},
        "sft_data_seconds": round(ours_s, 3),
        "speedup": {"vs_with_assistant_masks": round(hf_mask_s / ours_s, 2),
                    "vs_ids_only": round(hf_plain_s / ours_s, 2),
                    "vs_one_call_per_conversation": round(hf_single_s / ours_s, 2)},
        "tokens_per_s": round(tokens / ours_s),
        "identical": identical,
        "versions": {"transformers": transformers.__version__, "tokenizers": __import__("tokenizers").__version__},
    }


def timed_prepare_runs(files: list[Path], tokenizer, config, workdir: Path, repeats: int) -> dict:
    """``prepare`` with 1 and 2 workers, alternately, ``repeats`` times each."""
    import resource
    import statistics

    from sft_data.prepare import prepare

    def cpu() -> float:  # this process and its finished children (the workers, once the pool is shut down)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    seconds: dict[int, list[float]] = {1: [], 2: []}
    cpu_seconds: dict[int, list[float]] = {1: [], 2: []}
    outputs: dict[int, dict[str, bytes]] = {}
    load_before = os.getloadavg()
    for _ in range(repeats):
        for workers in (1, 2):
            out = workdir / f"workers{workers}"
            start, start_cpu = time.perf_counter(), cpu()
            result = prepare(files, tokenizer, config, out, workers=workers)
            seconds[workers].append(time.perf_counter() - start)
            cpu_seconds[workers].append(cpu() - start_cpu)
            outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    best = {w: min(s) for w, s in seconds.items()}
    median = {w: statistics.median(s) for w, s in seconds.items()}
    return {
        "samples": result.stats["samples"], "tokens": result.stats["tokens"], "repeats": repeats,
        "seconds": {f"workers_{w}": [round(x, 2) for x in s] for w, s in seconds.items()},
        "best_seconds": {f"workers_{w}": round(x, 2) for w, x in best.items()},
        "median_seconds": {f"workers_{w}": round(x, 2) for w, x in median.items()},
        "samples_per_s_best": {f"workers_{w}": round(result.stats["samples"] / x) for w, x in best.items()},
        "cpu_seconds_median": {f"workers_{w}": round(statistics.median(s), 2) for w, s in cpu_seconds.items()},
        "speedup_best": round(best[1] / best[2], 2),
        "speedup_median": round(median[1] / median[2], 2),
        "identical_output": outputs[1] == outputs[2],
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }


def bench_workers(workdir: Path, samples: int, seed: int, repeats: int) -> dict:
    from sft_data.config import DataConfig
    from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
    from sft_data.tokenizers.loading import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece

    report: dict = {"cpus": os.cpu_count()}
    lengths, _ = chat_lengths(samples, seed + 2, 4000)
    sp = load_tokenizer(train_sentencepiece([ROOT / "examples/data/corpus.txt"], workdir / "wtok.model", 2000))
    sample_text = (ROOT / "examples/data/corpus.txt").read_text(encoding="utf-8")[:20000]
    tokens_per_word = len(sp.encode(sample_text)) / len(sample_text.split())
    nemo = workdir / "nemo_chat.jsonl"
    nemo.write_text("".join(json.dumps(r) + "\n" for r in chat_records(lengths, seed, tokens_per_word)))
    config = DataConfig(max_seq_length=2048, pack_size=2048, seed=seed)
    report["nemo_chat_sentencepiece"] = timed_prepare_runs([nemo], sp, config, workdir / "nemo", repeats)

    lines = repo_text()
    bpe = HuggingFaceTokenizer(build_bpe(workdir / "wbpe", lines, 49_152))
    messages = workdir / "messages.jsonl"
    chats = chat_conversations(lines, samples, seed, words_per_message=47)
    messages.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    report["messages_chatml_bpe"] = timed_prepare_runs([messages], bpe, config, workdir / "msg", repeats)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--pack-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--e2e-samples", type=int, default=20_000, help="0 skips the end-to-end run")
    parser.add_argument("--chat-conversations", type=int, default=300, help="0 skips the chat template run")
    parser.add_argument("--repeats", type=int, default=5, help="chat template timings: best of this many")
    parser.add_argument("--only-chat", action="store_true", help="run only the chat template comparison")
    parser.add_argument("--worker-samples", type=int, default=10_000, help="0 skips the workers comparison")
    parser.add_argument("--worker-repeats", type=int, default=5, help="runs of each worker count")
    parser.add_argument("--only-workers", action="store_true", help="run only the workers comparison")
    args = parser.parse_args()
    if args.only_chat:
        with tempfile.TemporaryDirectory() as tmp:
            report = bench_chat_template(Path(tmp), args.chat_conversations, args.seed, args.repeats)
        print(json.dumps({"chat_template": report}, indent=2))
        return
    if args.only_workers:
        with tempfile.TemporaryDirectory() as tmp:
            report = bench_workers(Path(tmp), args.worker_samples, args.seed, args.worker_repeats)
        print(json.dumps({"workers": report}, indent=2))
        return

    lengths, truncated = chat_lengths(args.samples, args.seed, args.pack_size)
    positions = lengths - 1
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "numpy": np.__version__},
        "pack_size": args.pack_size,
        "lengths": {
            "samples": len(lengths), "distribution": "lognormal(ln 600, 0.8) clipped 50..4000",
            "truncated_to_max_seq_length": truncated, "mean": round(float(lengths.mean()), 1),
            **{f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)},
        },
        "padded_baseline": {k: round(v, 5) for k, v in
                            padded_baselines(positions, args.pack_size, args.seed).items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        report["packing"] = bench_packing(lengths, args.pack_size, args.seed, Path(tmp))
        report["trl"] = bench_trl(lengths, args.pack_size)
        if isinstance(report["trl"], dict):  # ours on the same lengths, beside it
            ours = report["packing"]["best_fit_decreasing"]
            report["trl"]["sft_data_best_fit_decreasing"] = {
                k: ours[k] for k in ("efficiency", "bins", "pack_samples_per_s")}
        if args.e2e_samples:
            # untruncated lengths: prepare itself truncates to max_seq_length
            e2e_lengths, _ = chat_lengths(args.e2e_samples, args.seed + 1, 4000)
            report["end_to_end"] = bench_end_to_end(e2e_lengths, args.pack_size, args.seed, Path(tmp))
        if args.chat_conversations:
            report["chat_template"] = bench_chat_template(Path(tmp), args.chat_conversations, args.seed, args.repeats)
        if args.worker_samples:
            report["workers"] = bench_workers(Path(tmp), args.worker_samples, args.seed, args.worker_repeats)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
