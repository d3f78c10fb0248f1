"""``sft generate``: answers from a fine-tuned ``.nemo``, with the template it was trained with.

Three modes: ``--prompt TEXT`` streams one answer; ``--input FILE.jsonl`` answers every record
(any training format) in batches, writes one JSON object per line and, when the records carry
answers, prints the exact-match rate; ``--chat`` is an interactive conversation in the terminal.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click
from sft_data.errors import RecordError, RecordProblem, SftError

from sft_cli.outputs import overwrite_option, replacing


def _params(max_new_tokens, temperature, top_k, top_p, repetition_penalty, greedy):
    from sft_model.sampling import SamplingParams

    # Greedy unless a sampling setting is given: deterministic answers are what a fine-tuned
    # model is usually checked with (and what exact match needs).
    sampling = not greedy and any(v is not None for v in (temperature, top_k, top_p))
    return SamplingParams(max_new_tokens=max_new_tokens, greedy=not sampling,
                          temperature=1.0 if temperature is None else temperature, top_k=top_k or 0,
                          top_p=1.0 if top_p is None else top_p, repetition_penalty=repetition_penalty)


@click.command("generate")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--prompt", help="One prompt; the answer streams to stdout.")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL in a training format (prompt-response, NeMo chat, messages, ...).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="With --input: write answers here (JSONL) instead of stdout.")
@overwrite_option()
@click.option("--chat", is_flag=True, help="Interactive multi-turn conversation (empty line or Ctrl-D ends).")
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", type=click.FloatRange(min=0),
              help="Sample with this temperature; 0 is greedy (the default).")
@click.option("--top-k", type=click.IntRange(min=0), help="Sample among the k most likely tokens.")
@click.option("--top-p", type=float, help="Nucleus sampling: the smallest set with this probability.")
@click.option("--repetition-penalty", default=1.0, show_default=True, type=float)
@click.option("--seed", type=int, help="Seed for sampling (reproducible answers per prompt).")
@click.option("--stop", multiple=True, help="Stop string (repeatable); EOS and end-of-turn always stop.")
@click.option("--greedy", is_flag=True, help="Always take the most likely token (overrides sampling options).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Prompts per forward pass with --input.")
@click.option("--base", type=click.Path(exists=True, path_type=Path),
              help="With an adapter-only MODEL (a LoRA run's .nemo): its base .nemo (default: the one it records).")
@click.pass_obj
def generate_command(app, model, prompt, input_path, output, chat, max_new_tokens, temperature, top_k, top_p,
                     repetition_penalty, seed, stop, greedy, batch_size, base, overwrite) -> None:
    """Generate answers with MODEL (.nemo), using the prompt or chat template stored in it.

    An adapter-only MODEL runs on its base (--base, else the base it was trained on) with the adapter applied.
    """
    if sum(x is not None and x is not False for x in (prompt, input_path, chat)) != 1:
        raise click.UsageError("give exactly one of --prompt, --input or --chat")
    if output is not None and input_path is None:
        raise click.UsageError("--output goes with --input")
    params = _params(max_new_tokens, temperature, top_k, top_p, repetition_penalty, greedy)
    with replacing(output, overwrite) if output else nullcontext() as tmp:
        from sft_trainer.generation.runner import Generator

        gen = Generator(model, app.data, extra_stop=stop, pm=app.pm, base=base)
        if prompt is not None:
            _stream(gen, gen.prompts.from_text(prompt), params, seed)
        elif chat:
            _chat(gen, params, seed)
        else:
            _batch(gen, input_path, tmp, params, seed, batch_size)


def _stream(gen, prompt, params, seed) -> str:
    def show(_row: int, delta: str) -> None:
        click.echo(delta, nl=False)
        sys.stdout.flush()

    [completion] = gen.run([prompt], params, seed=seed, on_text=show)
    click.echo()
    return completion.text


def _chat(gen, params, seed) -> None:
    from sft_data.types import Turn

    if not gen.prompts.chat:
        click.echo("(a prompt-response model: each message is answered on its own, without history)", err=True)
    turns: list[Turn] = []
    while True:
        try:
            text = input("you> ")
        except EOFError:
            break
        if not text.strip():
            break
        turns.append(Turn("user", text, speaker="User"))
        prompt = gen.prompts.from_turns(turns) if gen.prompts.chat else gen.prompts.from_text(text)
        click.echo("model> ", nl=False)
        answer = _stream(gen, prompt, params, seed)
        turns.append(Turn("assistant", answer, speaker="Assistant"))


def _batch(gen, input_path: Path, output: Path | None, params, seed, batch_size: int) -> None:
    import jsonlines
    from sft_data.records import read_records

    from sft_cli.progress import progress_bar

    records, prompts = [], []
    for item in read_records(input_path):
        if isinstance(item, RecordProblem):
            raise SftError(str(item))
        try:
            prompts.append(gen.prompts.from_record(item.data, item.location))
        except RecordError as exc:
            raise SftError(f"{item.location}: {exc}") from None
        records.append(item.data)
    from sft_trainer.generation.metrics import ExactMatch

    exact = ExactMatch()
    matches = scored = 0
    writer = jsonlines.open(output, "w") if output else jsonlines.Writer(sys.stdout)
    with writer, progress_bar("generating", total=len(prompts)) as update:
        for i, completion in enumerate(gen.run(prompts, params, batch_size=batch_size, seed=seed)):
            reference = prompts[i].reference
            if reference is not None:
                scored += 1
                matches += int(exact.score(completion.text, reference))
            writer.write({**records[i], "generated": completion.text, "finish_reason": completion.finish_reason})
            update(i + 1)
    if scored:
        click.echo(f"exact match: {matches}/{scored} = {matches / scored:.1%}", err=True)
