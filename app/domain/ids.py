"""What a row id looks like from outside: the one parser of ids that arrive as text (a query
parameter, a form field, a link), for the API and the pages alike."""

from __future__ import annotations

# Ids are SQL BIGINTs: a larger number can name nothing, and must not reach the driver.
MAX_ID = 2**63 - 1
# len(str(MAX_ID)): longer text is refused before int() sees it (int() refuses past 4,300
# digits with a ValueError, a 500 once).
MAX_ID_DIGITS = 19


def parse_id(text: str) -> int | None:
    """The id `text` spells (ASCII digits, 1 to MAX_ID), else None."""
    # isascii: str.isdigit() also admits "²", which int() refuses (a 500 once).
    if not (0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None
