"""Text from a run's values or from the bucket, made inert for the Markdown the Data Science Pipelines UI
(and MLflow's) renders: it shows as itself, never as markup or a link."""

import html
import re

ZERO_WIDTH_SPACE = "\u200b"
SPECIAL = set("\\|*_`[]#")
# What GitHub-flavoured renderers turn into links without any markup: a scheme's colon (http:, mailto:), an
# e-mail address's @, a name starting with www.
AUTOLINK_MARKS = re.compile(r":|@|(?i:www)(?=\.)")


def inert(text: object) -> str:
    """``text`` on one line, shown as itself in Markdown: no HTML, emphasis, link, image, heading or table
    cell break, and no bare URL made a link (a zero-width space follows each ':', '@' and 'www')."""
    escaped = html.escape(" ".join(str(text).split()), quote=False)
    escaped = "".join("\\" + c if c in SPECIAL else c for c in escaped)
    return AUTOLINK_MARKS.sub(lambda mark: mark.group(0) + ZERO_WIDTH_SPACE, escaped)
