"""Find the final-answer span in a model response.

Convention (design card §1.4): the last complete ``\\boxed{...}`` wins; without one, the last
"The answer is X" / "Final answer: X" / "#### X" marker, up to the end of its line or sentence
("The final answer is 7. I hope it is correct." answers 7). Every routine here is linear in the
length of the text, so a 1 MB response or hundreds of ``\\boxed{}`` cost milliseconds, not minutes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_ANSWER_CHARS = 1_000
"""A span longer than this is not a final answer (and would make checkers slow)."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BRACES = re.compile(r"[{}]")
_AFTER_ANSWER = re.compile(r"\s*(?:is\b|:)\s*:?\s*")
_ANSWER_MARKER = re.compile(r"(?<![^\W_])answer" + _AFTER_ANSWER.pattern, re.IGNORECASE)
_LATEX_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_EDGE_NOISE = " \t\r\n*$`\"'.:,;"
_SENTENCE_ENDS = (". ", "! ", "? ", ".$", "!$", "?$")
_SENTENCE_SYNTAX = re.compile(r"[{}$.!?]")
_MATH_THEN_SENTENCE = re.compile(r" ?\$+ +[A-Z<\[]")
_SEPARATOR_FILLER = re.compile(r"\\text\s*\{|\\q?quad|\\[,;: ()\[\]]|\\\\|[\s${}&]")
_LIST_SEPARATOR = re.compile(r"\s*(?:(?:,|;|\band\b)\s*)+")
_MAX_SEPARATOR_CHARS = 60
_MATH_DELIMITERS = (("\\(", "\\)"), ("\\[", "\\]"))


class Extracted(NamedTuple):
    """An answer span and where it came from ("boxed" or "marker")."""

    text: str
    source: str


def _matching_close(text: str, open_pos: int, limit: int) -> int:
    """Index of the brace closing ``text[open_pos]``, or -1 if it does not close before ``limit``."""
    depth = 0
    for match in _BRACES.finditer(text, open_pos, limit):
        if match.group() == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return match.start()
    return -1


def _last_box_start(text: str, end: int) -> tuple[int, int]:
    """Start of the last box command before ``end`` and the command's length; (-1, 0) if none."""
    best, length = -1, 0
    for command in _BOX_COMMANDS:
        pos = text.rfind(command, 0, end)
        if pos > best:
            best, length = pos, len(command)
    return best, length


def _box_before(text: str, end: int) -> tuple[int, int, str] | None:
    """(start, end, content) of the last complete box command that ends by ``end``, or None.

    An unclosed box cannot enclose anything after it, so each earlier candidate is scanned only up
    to the start of the later one: the total work stays linear however many boxes there are.
    """
    while True:
        start, length = _last_box_start(text, end)
        if start < 0:
            return None
        pos = start + length
        while pos < end and text[pos] in " \t":
            pos += 1
        if pos < end and text[pos] == "{":
            close = _matching_close(text, pos, end)
            if close >= 0:
                return start, close + 1, text[pos + 1 : close]
        elif pos > start + length and pos < end:
            # "\boxed 5": the token after the space.
            stop = pos
            while stop < end and not text[stop].isspace() and text[stop] not in "$":
                stop += 1
            if stop > pos:
                return start, stop, text[pos:stop]
        end = start


def _is_list_separator(gap: str) -> bool:
    """Whether the text between two boxes only lists them: ", ", " and ", "\\quad \\text{and} \\quad"."""
    return len(gap) <= _MAX_SEPARATOR_CHARS and _LIST_SEPARATOR.fullmatch(_SEPARATOR_FILLER.sub(" ", gap)) is not None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox``, or ``\\boxed X``).

    Boxes that end the answer as a list ("\\boxed{-2} and \\boxed{1}", "\\boxed{1}, \\boxed{2}") are
    one answer, their contents joined by ", ". Any other text between boxes (a correction, "then")
    leaves only the last box.
    """
    box = _box_before(text, len(text))
    if box is None:
        return None
    start, _, content = box
    parts = [content]
    while sum(map(len, parts)) <= MAX_ANSWER_CHARS:
        earlier = _box_before(text, start)
        if earlier is None or not _is_list_separator(text[earlier[1] : start]):
            break
        start, _, content = earlier
        parts.append(content)
    return ", ".join(reversed(parts)) if len(parts) > 1 else parts[0]


def _sentence(line: str) -> str:
    """``line`` up to the end of its first sentence: a ".", "!" or "?" followed by a space and a
    capital letter or a tag ("7. I hope it is correct.", "7. <|im_end|>"), outside braces and
    outside $...$ unless it ends the math too ("$x = 2.$ Next"). A decimal point or "approx. 5"
    does not end a sentence."""
    if not any(end in line for end in _SENTENCE_ENDS):
        return line
    depth, dollars = 0, 0
    for match in _SENTENCE_SYNTAX.finditer(line):
        char, pos = match.group(), match.start()
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "$":
            dollars += pos == 0 or line[pos - 1] != "\\"
        elif depth <= 0 and dollars % 2 == 0:
            after = line[pos + 1 : pos + 2]
            rest = line[pos + 1 :].lstrip(" ")
            if after == " " and (rest[:1].isupper() or rest[:1] in ("<", "[")):
                return line[:pos]
        elif depth <= 0 and _MATH_THEN_SENTENCE.match(line, pos + 1):  # "$x = 2.$ Next ..."
            return line[:pos]
    return line


def _line_from(text: str, start: int) -> str:
    stop = text.find("\n", start)
    return _sentence(text[start:stop] if stop >= 0 else text[start:])


def _marker_span(text: str) -> str | None:
    """The rest of the line after the last answer marker ("####", "answer is", "answer:"), or None.

    Plain substring scans instead of one case-insensitive regex over the whole text: this runs
    for every rollout, and most responses hold one marker near the end. After a "####" only the
    tail can hold a later marker, so only the tail is searched (and lower-cased).
    """
    hashes = text.rfind("####")
    if hashes >= 0:
        region = text[hashes + 4 :]
        if "n" not in region and "N" not in region:  # no "answer" follows the "####": the common case
            stop = region.find("\n")
            line = region if stop < 0 else region[:stop]
            return line if ". " not in line else _sentence(line)
    else:
        region = text
    lowered = region.lower()
    if len(lowered) != len(region):  # a few characters change length when lower-cased
        later = max((m.end() for m in _ANSWER_MARKER.finditer(region)), default=-1)
        return _line_from(region, max(later, 0)) if later >= 0 or hashes >= 0 else None
    end = len(lowered)
    while True:
        pos = lowered.rfind("answer", 0, end)
        if pos < 0:
            return _line_from(region, 0) if hashes >= 0 else None
        if pos == 0 or not lowered[pos - 1].isalnum():
            tail = _AFTER_ANSWER.match(lowered, pos + 6)
            if tail is not None:
                return _line_from(region, tail.end())
        end = pos


def _trim(span: str) -> str:
    """Strip markdown, dollar signs and edge punctuation, keeping a leading decimal point (".5"),
    and a \\( \\) or \\[ \\] pair around the whole span."""
    body = span.lstrip(_EDGE_NOISE)
    if body[:1].isdigit() and len(body) < len(span) and span[-len(body) - 1] == ".":
        body = "." + body
    body = body.rstrip(_EDGE_NOISE)
    if body[:1] == "\\":
        for opener, closer in _MATH_DELIMITERS:
            if body.startswith(opener) and body.endswith(closer):
                return _trim(body[len(opener) : -len(closer)])
    return body


def raw_answer_span(text: str) -> str | None:
    """The final answer of ``text`` with its LaTeX intact (math answers keep ``\\text{cm}``,
    ``\\mathrm{e}``), or None when the response commits to no answer.

    The span is stripped of markdown, dollar signs and edge punctuation; an empty or implausibly
    long span (over MAX_ANSWER_CHARS) is no answer.
    """
    if "\\" in text:  # every box command starts with a backslash
        span = last_boxed(text)
        if span is None:
            span = _marker_span(text)
            if span is None:
                return None
        trimmed = _trim(span)
    else:  # the common case: no LaTeX, so only a leading decimal point (".5") needs _trim
        span = _marker_span(text)
        if span is None:
            return None
        trimmed = _trim(span) if "." in span else span.strip(_EDGE_NOISE)
    return trimmed if trimmed and len(trimmed) <= MAX_ANSWER_CHARS else None


def plain_text(span: str) -> str:
    """``span`` with simple LaTeX text wrappers (``\\text{B}``, ``\\mathrm{B}``) unwrapped."""
    return _trim(_LATEX_WRAPPERS.sub(r"\1", span)) if "\\" in span else span


def final_answer_span(text: str) -> str | None:
    """The final answer of ``text`` as plain text (LaTeX text wrappers unwrapped), or None."""
    span = raw_answer_span(text)
    if span is None:
        return None
    span = plain_text(span)
    return span or None


def extract_final_answer(text: str) -> Extracted | None:
    """The final-answer span of ``text`` and where it came from, or None."""
    span = final_answer_span(text)
    if span is None:
        return None
    return Extracted(span, "boxed" if "\\" in text and last_boxed(text) is not None else "marker")
