"""Small text helpers shared by templates and the command line."""

from __future__ import annotations


def unescape(text: str) -> str:
    r"""Interpret backslash escapes (``\n``, ``\t``, ``\x11``, ``\\``) typed in configs and on command lines.

    The reference ran templates through ``unicode_escape`` directly, which garbles non-ASCII
    (``Réponse`` became ``RÃ©ponse``); escaping non-ASCII first keeps it intact.
    """
    if "\\" not in text:
        return text
    return text.encode("ascii", "backslashreplace").decode("unicode_escape")
