"""Plausible English for the simulated LM's free-text fields: reasoning, thoughts and short answers.

Text is chosen from templates by a per-field seeded generator, so it varies between
prompts (and so do token counts and latencies) but never between runs.
"""

import random
import re

_STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i if in into is it its "
    "may me might my of on or our should so than that the their them then there these they this to "
    "was we were what when where which who whom why will with would you your please given answer "
    "question field fields produce".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

_REASONING_OPENERS = (
    "The question is about {topic}, so I focus on what it asks directly.",
    "To answer this I need to consider {topic} and the details given.",
    "Looking at the input, the key point is {topic}.",
    "Let me think about {topic} step by step.",
)
_REASONING_MIDDLES = (
    "The relevant facts are stated plainly, so no further lookup is needed.",
    "Weighing the options, one answer fits the information best.",
    "Nothing in the input contradicts the most direct reading.",
    "A short, specific answer is what the task calls for.",
)
_REASONING_CLOSERS = (
    "That gives a clear answer.",
    "So the answer follows directly.",
    "I am fairly confident in this conclusion.",
)
_SHORT_ANSWERS = (
    "{Topic}.",
    "It is {topic}.",
    "Most likely {topic}.",
    "{Topic}, based on the information given.",
)


def topic_of(text: str) -> str:
    """The most telling word of a text: a proper noun if there is one, else its longest content word."""
    words = _WORD.findall(text)
    proper = [w for i, w in enumerate(words) if i > 0 and w[0].isupper() and w.lower() not in _STOPWORDS]
    if proper:
        return proper[0]
    content = [w for w in words if w.lower() not in _STOPWORDS and len(w) > 2]
    if content:
        return max(content, key=len)
    return "the request"


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:]


def reasoning(topic: str, draw: random.Random, conclusion: str | None = None) -> str:
    """One to three sentences of reasoning, ending with the conclusion when there is one."""
    sentences = [draw.choice(_REASONING_OPENERS).format(topic=topic)]
    if draw.random() < 0.6:
        sentences.append(draw.choice(_REASONING_MIDDLES))
    sentences.append(conclusion if conclusion else draw.choice(_REASONING_CLOSERS))
    return " ".join(sentences)


def short_answer(topic: str, draw: random.Random) -> str:
    return draw.choice(_SHORT_ANSWERS).format(topic=topic, Topic=_capitalized(topic))


def phrase(topic: str, draw: random.Random) -> str:
    """A few words for a string inside structured output (a list item, a model's attribute)."""
    return draw.choice((topic, f"{topic} details", f"about {topic}", f"{topic} summary", "general"))


def excerpt(text: str, words: int = 16) -> str:
    """The first sentence of a text, cut to a few words: an answer lifted from an observation."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    parts = first.split()
    return " ".join(parts[:words]) if parts else text.strip()
