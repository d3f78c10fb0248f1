"""Model families: which HF architectures we convert, and how (see ``base.ModelFamily``)."""

from sft_model.families.base import ModelFamily
from sft_model.families.registry import FamilyRegistry, get_families

__all__ = ["FamilyRegistry", "ModelFamily", "get_families"]
