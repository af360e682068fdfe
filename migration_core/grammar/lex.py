"""Undo what phones and Macs do to typed text (smart dashes, quotes, odd spaces); split it into tokens."""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass

from migration_core.errors import GrammarError
from migration_core.grammar.values import DASHES

# Slack caps slash-command text well below this; the cap keeps hostile input cheap to reject.
MAX_TEXT_CHARS = 4000

_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"  # “ ” „ ‟ ″ « »
_OPENING_SINGLE_QUOTES = "\u2018\u201a\u201b"  # ‘ ‚ ‛
_APOSTROPHE = "\u2019"  # ’: a closing quote, or an apostrophe inside a word (don’t)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})  # controls, format chars (ZWSP, bidi), surrogates
_OPTION_RE = re.compile(rf"[{DASHES}]+([A-Za-z][^=]*)(?:=(.*))?", re.ASCII | re.DOTALL)


@dataclass(frozen=True)
class OptionToken:
    """A token that names an option: `--name` or `--name=value` (name lower-cased, `_` read as `-`)."""

    name: str
    inline_value: str | None
    text: str  # as typed, for messages


def normalise(text: str) -> str:
    """Map smart punctuation and odd whitespace to what a shell-like tokenizer understands.

    - NFKC folds full-width forms (phone IMEs) and compatibility spaces to their plain versions;
    - every whitespace character (non-breaking, narrow, ideographic, tabs, newlines) becomes a space;
    - control and invisible format characters (zero-width spaces, bidi overrides) are dropped: they
      cannot be seen in Slack, so they must not change what a command means;
    - curly double quotes become `"`; curly single quotes become `'`, except `’` between two letters or
      digits, which is an apostrophe (iOS turns don't into don’t) and is kept as typed.
    Dashes are handled per token (`option_token`), because a dash inside quoted text must stay.
    """
    # Drop invisible characters first so that NFKC sees (and composes) what the reader sees.
    visible = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
    )
    text = unicodedata.normalize("NFKC", visible)
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            out.append(" ")
        elif ch in _DOUBLE_QUOTES:
            out.append('"')
        elif ch in _OPENING_SINGLE_QUOTES:
            out.append("'")
        elif ch == _APOSTROPHE:
            before = text[i - 1] if i > 0 else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            out.append(ch if before.isalnum() and after.isalnum() else "'")
        else:
            out.append(ch)
    return "".join(out)


def tokenize(text: str) -> list[str]:
    """Normalise `text` and split it like a POSIX shell would (quotes group words; nothing is executed)."""
    if len(text) > MAX_TEXT_CHARS:
        raise GrammarError(
            f"the command is too long ({len(text)} characters; the limit is {MAX_TEXT_CHARS})",
            "a /migrate command is one line: `<vm> to <host> [options]`",
        )
    normalised = normalise(text)
    try:
        return shlex.split(normalised, comments=False, posix=True)
    except ValueError as exc:
        if "quotation" in str(exc):
            raise GrammarError(
                "unterminated quote: a quote was opened but never closed",
                'close the quote, e.g. --reason "CHG-1234 kernel update"',
            ) from None
        raise GrammarError(
            "a backslash at the end of the command escapes nothing",
            "remove the trailing backslash",
        ) from None


def is_lone_dash(token: str) -> bool:
    """`--`, `—` or `–` on its own: phones insert a space after an auto-corrected dash."""
    return token != "" and all(ch in DASHES for ch in token)


def option_token(token: str) -> OptionToken | None:
    """Read `token` as an option if it starts with dashes (any kind, any number) followed by a letter.

    `--postcopy`, `—postcopy`, `–postcopy`, `-postcopy` and `—-postcopy` all name `postcopy`, because a
    phone turns `--` into a dash and no VM/host name may start with a dash. `--max_downtime=2s` names
    `max-downtime` with the inline value `2s`.
    """
    m = _OPTION_RE.fullmatch(token)
    if m is None:
        return None
    return OptionToken(name=m.group(1).lower().replace("_", "-"), inline_value=m.group(2), text=token)
