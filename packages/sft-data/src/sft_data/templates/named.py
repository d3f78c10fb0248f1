"""The named built-in Jinja templates: ``chatml`` and ``llama3``, with ``{% generation %}`` markers.

Their text is the well-known template's (ChatML as Qwen/OpenAI write it; Llama 3's as Meta ships
it, ``bos_token`` first and contents trimmed); the markers only say what is trained: an assistant
message's content and its end-of-turn token (``<|im_end|>`` / ``<|eot_id|>``), which is how the
model learns to stop. The newline ChatML writes after ``<|im_end|>`` is not trained: generation
stops at ``<|im_end|>``, so the model never produces it.

Jinja's ``trim_blocks`` eats a newline written right after a tag, so newlines are string literals.
"""

from __future__ import annotations

from sft_data.templates.jinja import JinjaChatTemplate

CHATML_SOURCE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3_SOURCE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def chatml_template() -> JinjaChatTemplate:
    return JinjaChatTemplate(
        CHATML_SOURCE, name="chatml", description="ChatML (<|im_start|>role ... <|im_end|>), as Qwen and OpenAI"
    )


def llama3_template() -> JinjaChatTemplate:
    return JinjaChatTemplate(
        LLAMA3_SOURCE, name="llama3", description="Llama 3 (<|start_header_id|>role<|end_header_id|> ... <|eot_id|>)"
    )
