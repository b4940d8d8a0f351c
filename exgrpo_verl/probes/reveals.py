"""Does a probe state or imply the gold answer? (``reveals_answer``, design card §1.3)

In Scenario A the student answers k probes and then the original question. A probe that gives the
answer away turns that last turn into copying, and r_dsu would reward the copying. A probe
restates its question, so what counts is what it says beyond the question: the question's lines
that the probe repeats word for word are set aside first, then

* **open answers** (numbers, math, dates, free text): the probe reveals the answer when the rest of
  it mentions the answer more often than the question lines it does not repeat word for word (a
  variant with one number changed still carries the question's other mentions). A mention is any
  value the checker of the answer type accepts as the gold one ("$18", "18.00"), and for numbers
  also arithmetic worth it ("9 * 2"): a quoted final step gives the answer away even when its
  result is changed or left out;
* **closed answers** (options, yes/no, NLI labels): it reveals the answer when the options it names
  beyond the question are exactly the gold one, or exactly all the others (a yes/no probe that
  denies the other answer, a two-option probe that rules out the distractor). Naming one wrong
  option of three or more narrows the question without deciding it and is not flagged; the
  templates name at most one wrong option per question, so several of its probes together
  cannot narrow it further;
* **any answer statement** ("the answer is X", "X is the correct option", ``\\boxed{X}``) that the
  dataset's own checker grades as correct reveals it, whatever the type.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from exgrpo_verl.answers import grade
from exgrpo_verl.answers.choices import gold_label, normalize_text
from exgrpo_verl.answers.dates import parse_date
from exgrpo_verl.answers.labels import NLI, YES_NO
from exgrpo_verl.answers.numbers import is_plain_number, numbers_equal, parse_number
from exgrpo_verl.data_sources import AnswerType
from exgrpo_verl.datasets.record import Record
from exgrpo_verl.probes import slots

# --- answer statements ------------------------------------------------------------------------

_STATEMENT = re.compile(
    r"\b(?:answer|option|choice|label)\b(?:\s+(?:to|of|for|in)\b[^.?!\n]{0,80}?)?"
    r"\s*(?:is|was|would be|will be|should be|must be|equals|=|:)\s*(?P<span>[^\n]{1,200})",
    re.IGNORECASE,
)
_CLAIMED = re.compile(
    r"\s(?:is|was)\s+(?:the\s+)?(?:correct|right|final|true)\s+(?:answer|option|choice|label)\b", re.IGNORECASE
)
_BOXED = re.compile(r"\\boxed\s*\{(?P<span>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_SENTENCE_END = re.compile(r"(?<!\d)[.?!;](?!\d)|,\s|\s(?:and|but|because|so|since)\s")


def _statements(text: str) -> Iterable[str]:
    """Spans the text puts forward as an answer."""
    for match in _STATEMENT.finditer(text):
        span = _SENTENCE_END.split(match.group("span"), 1)[0].strip()
        if span:
            yield span
    for match in _CLAIMED.finditer(text):
        words = text[max(0, match.start() - 80) : match.start()].split()[-3:]  # "(B) fridge is the right answer"
        for start in range(len(words)):
            yield " ".join(words[start:])
    for match in _BOXED.finditer(text):
        yield match.group("span")


def states_gold(text: str, record: Record) -> bool:
    """Whether the text states, as an answer, something the dataset's checker accepts as gold."""
    for span in _statements(text):
        span = span.strip(" *$`\"'")
        if span and grade(record.data_source, f"\\boxed{{{span}}}", record.answer, record.choices)[0]:
            return True
    return False


# --- setting the restated question aside ------------------------------------------------------


_OPTIONS_HEADING = "\n\nAnswer choices:\n"  # exgrpo_verl.datasets.render.with_options


def _stem_lines(question: str) -> list[str]:
    """The question's lines without its rendered options: the ones that may name an option in passing."""
    stem = question.split(_OPTIONS_HEADING, 1)[0]
    return [line.strip() for line in stem.splitlines() if line.strip()]


def _set_aside(text: str, question: str) -> tuple[str, list[str]]:
    """The probe without the question lines it repeats word for word as lines of its own, and the
    question lines it does not repeat ("(A) oven" inside a sentence of the probe is not a repeat)."""
    rest, unrepeated = text, []
    lines = {line.strip() for line in question.splitlines() if line.strip()}
    for line in sorted(lines, key=len, reverse=True):
        start = _own_line(rest, line)
        if start < 0:
            unrepeated.append(line)
        else:
            rest = rest[:start] + rest[start + len(line) :]
    return rest, unrepeated


def _own_line(text: str, line: str) -> int:
    """Where ``line`` stands in ``text`` as a line of its own (spaces aside), or -1."""
    start = text.find(line)
    while start >= 0:
        end = start + len(line)
        if text[:start].rstrip(" \t").endswith("\n") or not text[:start].strip(" \t"):
            if text[end:].lstrip(" \t").startswith("\n") or not text[end:].strip(" \t"):
                return start
        start = text.find(line, start + 1)
    return -1


# --- open answers: how often a text mentions the gold value -----------------------------------

# A number as written in prose or LaTeX; not an exponent or index (x^2, a_{10}).
_NUMBER = re.compile(
    r"(?:(?<![\w)\].])-)?(?<![\w.^_])(?<![\^_]\{)(?:\d{1,3}(?:,\d{3})+(?![\d,]\d)|\d+)(?:\.\d+)?(?![\w.]\d)"
)
_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}")
_US_DATE = re.compile(r"(?<!\d)\d{1,2}\s*/\s*\d{1,2}\s*/\s*\d{4}(?!\d)|(?<!\d)\d{4}-\d{1,2}-\d{1,2}(?!\d)")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_NAMED_DATE = re.compile(rf"\b({'|'.join(_MONTHS)})\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE)
_LATEX_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\$")


_RESULT_BEFORE = re.compile(
    r"(?:=|\\approx|\b(?:is|are|was|were|be|equals?|gives?|get|gets|got|obtain|yields?|makes?))"
    r"(?:\s|\$|\\boxed\{|\\left\(|[{(])*$"
)


def _value_mentions(value: float, prose: bool) -> Callable[[str], int]:
    """Counts the mentions of ``value`` in a text: numbers and fractions worth it, and in word
    problems (``prose``) any arithmetic worth it. In LaTeX solutions small numbers are everywhere
    (coefficients, cases), so there only a result counts: a number after "=", "is", "gives"."""

    def count(text: str) -> int:
        found = 0
        for match in _NUMBER.finditer(text):
            if numbers_equal(float(match.group(0).replace(",", "")), value) and (
                prose or _RESULT_BEFORE.search(text, max(0, match.start() - 24), match.start())
            ):
                found += 1
        for match in _FRACTION.finditer(text):
            numerator, denominator = float(match.group(1)), float(match.group(2))
            found += denominator != 0 and numbers_equal(numerator / denominator, value)
        if prose:
            found += sum(numbers_equal(result, value) for result in slots.arithmetic_values(text))
        return found

    return count


def _dates(text: str) -> list[str]:
    found = [parse_date(match.group(0)) for match in _US_DATE.finditer(text)]
    for match in _NAMED_DATE.finditer(text):
        month = _MONTHS.index(match.group(1).lower()) + 1
        found.append(parse_date(f"{month}/{match.group(2)}/{match.group(3)}"))
    return [date for date in found if date]


def _date_mentions(gold: str) -> Callable[[str], int]:
    return lambda text: sum(date == gold for date in _dates(text))


def _latex(text: str) -> str:
    """LaTeX in a form where equal answers read alike: no \\left, thin spaces or $, no spaces
    around symbols ("p - q" and "p-q"), \\dfrac and \\tfrac as \\frac."""
    text = re.sub(r"\\[dt]frac", r"\\frac", _LATEX_NOISE.sub(" ", text))
    text = re.sub(r"\s*([^\w\s\\])\s*", r"\1", text)
    return re.sub(r"\s+", " ", text)


def _latex_mentions(gold: str) -> Callable[[str], int]:
    target = _latex(gold).strip()
    before = r"(?<![\w\\])" if target[:1].isalnum() else ""
    after = r"(?![\w])" if target[-1:].isalnum() else ""
    pattern = re.compile(before + re.escape(target) + after)
    return lambda text: len(pattern.findall(_latex(text))) if target else 0


def _text_mentions(gold: str) -> Callable[[str], int]:
    target = normalize_text(gold)
    pattern = re.compile(rf"(?<!\w){re.escape(target)}(?!\w)")
    return lambda text: len(pattern.findall(normalize_text(text))) if target else 0


def _numeric_gold(record: Record) -> float | None:
    """The gold answer's value when it is a number (or a plain fraction), else None."""
    text = record.answer.strip()
    if is_plain_number(text) or _FRACTION.fullmatch(text.strip("$")):
        return parse_number(text)
    return None


def _open_counter(record: Record) -> Callable[[str], int]:
    kind = record.answer_type
    value = _numeric_gold(record)
    if kind is AnswerType.DATE and parse_date(record.answer):
        return _date_mentions(str(parse_date(record.answer)))
    if value is not None and kind is not AnswerType.MATH:
        return _value_mentions(value, prose=True)
    if kind is AnswerType.MATH:
        if value is None:
            return _latex_mentions(record.answer)
        return _value_mentions(value, prose=False)
    return _text_mentions(record.answer)


# --- closed answers: which options a text names -----------------------------------------------

_QUOTE_OPEN, _QUOTE_CLOSE = "\"'“‘`", "\"'”’`"
_YES_NO_WORDS = r"(yes|no|true|false)"
_YES_NO_MENTIONS = (
    re.compile(rf"(?<!\w)[{_QUOTE_OPEN}]\s*{_YES_NO_WORDS}[.!]?\s*[{_QUOTE_CLOSE}](?!\w)", re.IGNORECASE),
    re.compile(
        r"\b(?:answer(?:s|ed)?|repl(?:y|ies|ied)|respond(?:s|ed)?|says?|said|conclud(?:e|es|ed)|claim(?:s|ed)?"
        r"|chose|choose|chooses|pick(?:s|ed)?|guess(?:es|ed)?)\b"
        r"(?:\s+(?:is|was|be|would|should|will|of|to|that|it|is|with|as|here))*"
        rf"\s*[:=]?\s*[{_QUOTE_OPEN}(]?\s*{_YES_NO_WORDS}\b",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b{_YES_NO_WORDS}[{_QUOTE_CLOSE})]?\s+(?:is|was|would be)\s+(?:the\s+)?"
        r"(?:correct|right|wrong|incorrect|mistaken|answer)",
        re.IGNORECASE,
    ),
    re.compile(rf"\b{_YES_NO_WORDS}\s+(?:or|/)\s+{_YES_NO_WORDS}\b", re.IGNORECASE),
    re.compile(rf"\\boxed\s*\{{\s*{_YES_NO_WORDS}\s*\}}", re.IGNORECASE),
)
_NLI_WORDS = re.compile(r"\b(entail(?:s|ed|ment)?|neutral|contradict(?:s|ed|ion|ory)?)\b", re.IGNORECASE)


def _yes_no_named(text: str) -> Counter:
    spans: dict[int, str] = {}
    for pattern in _YES_NO_MENTIONS:
        for match in pattern.finditer(text):
            for group in range(1, (match.lastindex or 0) + 1):
                if match.group(group):
                    spans[match.start(group)] = str(YES_NO.parse(match.group(group)))
    return Counter(spans.values())


def _nli_named(text: str) -> Counter:
    return Counter(str(NLI.parse(match.group(1))) for match in _NLI_WORDS.finditer(text))


def _choice_named(choices: dict[str, str], dates: bool) -> Callable[[str], Counter]:
    """Counts, per option label, the mentions of "(B)", "option B", \\boxed{B}, and of its text
    (options that are dates: any way of writing that date)."""
    label_patterns = {
        label: re.compile(
            rf"\(\s*{re.escape(label)}\s*\)|(?i:\b(?:option|choice|answer)\s+)\(?{re.escape(label)}\b"
            rf"|\\boxed\s*\{{\s*\(?{re.escape(label)}\)?\s*\}}"
        )
        for label in choices
    }
    text_counters = {
        label: (_date_mentions(str(parse_date(text))) if dates and parse_date(text) else _text_mentions(text))
        for label, text in choices.items()
    }

    def named(text: str) -> Counter:
        counts: Counter = Counter()
        for label in choices:
            found = len(label_patterns[label].findall(text)) + text_counters[label](text)
            if found:
                counts[label] = found
        return counts

    return named


def _closed_set(record: Record) -> tuple[Callable[[str], Counter], set[str], str] | None:
    """(what a text names, the options, the gold option) for a closed answer type, else None."""
    if record.choices and record.answer_type in (AnswerType.CHOICE, AnswerType.DATE, AnswerType.FREE_TEXT):
        gold = gold_label(record.answer, record.choices)
        if gold not in record.choices:
            return None
        return _choice_named(record.choices, record.answer_type is AnswerType.DATE), set(record.choices), gold
    if record.answer_type is AnswerType.YES_NO:
        gold = YES_NO.canonical(record.answer)
        return (_yes_no_named, {"yes", "no"}, gold) if gold else None
    if record.answer_type is AnswerType.NLI:
        gold = NLI.canonical(record.answer)
        return (_nli_named, set(NLI.order), gold) if gold else None
    return None


# --- the decision -----------------------------------------------------------------------------


def reveals_answer(text: str, record: Record) -> bool:
    """Whether the probe ``text`` states or implies ``record``'s gold answer beyond what the
    question itself shows (see the module docstring)."""
    rest, unrepeated = _set_aside(text, record.question)
    if states_gold(rest, record):
        return True
    closed = _closed_set(record)
    if closed is None:
        count = _open_counter(record)
        return count(rest) > sum(count(line) for line in unrepeated)
    named_in, options, gold = closed
    allowance: Counter = Counter()
    stem = set(_stem_lines(record.question))
    for line in (line for line in unrepeated if line in stem):
        found = named_in(line)
        if len(found) < 2:  # a line naming several options lists them (the options, "yes or no"): no allowance
            allowance += found
    named = {option for option, count in named_in(rest).items() if count > allowance[option]}
    return named == {gold} or named == options - {gold}


def _table_partners(record: Record) -> list[re.Pattern]:
    """The other cells of the table rows that hold a non-numeric answer (TabMWP "baseball team | 38"):
    a step that finds 38 has as good as found the team."""
    if _numeric_gold(record) is not None or "|" not in record.question:
        return []
    answer = normalize_text(record.answer)
    cells: set[str] = set()
    for line in record.question.splitlines():
        row = [normalize_text(cell) for cell in line.split("|")]
        if len(row) >= 2 and answer in row:
            cells.update(cell for cell in row if cell and cell != answer)
    return [re.compile(rf"(?<!\w){re.escape(cell)}(?!\w)") for cell in sorted(cells)]


def mentions_answer(text: str, record: Record) -> bool:
    """Whether ``text`` (a solution step, a changed question) mentions the gold answer at all, or,
    in a table question, a value from the answer's row: what a template avoids quoting."""
    if states_gold(text, record):
        return True
    closed = _closed_set(record)
    if closed is None:
        found = _open_counter(record)(text) > 0
    else:
        named_in, _, gold = closed
        found = named_in(text)[gold] > 0
    normalized = normalize_text(text)
    return found or any(pattern.search(normalized) for pattern in _table_partners(record))
