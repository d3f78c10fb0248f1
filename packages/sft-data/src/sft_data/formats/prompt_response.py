"""NeMo prompt-response records: any JSON object whose fields fill ``prompt_template``."""

from __future__ import annotations

import re
from typing import Any

from sft_data.config import DataConfig
from sft_data.formats.base import require_str
from sft_data.types import PromptResponse

PLACEHOLDER = re.compile(r"{([^{}]+?)}")


def template_fields(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


class PromptResponseFormat:
    name = "prompt-response"
    description = "NeMo prompt-response: one JSON object per line filling prompt_template (default {input} {output})"

    def detect(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("input"), str) and isinstance(record.get("output"), str)

    def parse(self, record: dict[str, Any], config: DataConfig) -> PromptResponse:
        # Values are .strip(' ')'d as the reference does, so the same files give the same tokens.
        fields = {key: require_str(record, key).strip(" ") for key in template_fields(config.prompt_template)}
        return PromptResponse(fields)
