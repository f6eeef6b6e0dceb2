"""Text that people type or paste (links, shape boxes) made safe to show and parsed into values. No Streamlit."""

from __future__ import annotations

import re

SHAPES_MAX_CHARS = 500  # the Parameters page's shape box: a few dozen shapes, never thousands of lines


ZERO_WIDTH_SPACE = "\u200b"


def plain(text: str, limit: int = 160) -> str:
    """Text from a URL made safe to show in Markdown: no markup, no maths, no links, no icons, bounded length.

    Escaping stops markup, but Markdown still turns `www.x.y` or `http://…` into a link and Streamlit turns
    `:material/home:` into an icon; an invisible zero-width space after each `.`, `:`, `/` and `@` breaks both.
    """
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    text = re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])", r"\\\1", text)
    return re.sub(r"([.:/@])", r"\1" + ZERO_WIDTH_SPACE, text)


def parse_shapes(text: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Layer shapes typed as 'd x k' (x, × or *), comma-separated: ({label: (d, k)}, the parts that are not)."""
    shapes, bad = {}, []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d{1,9})\s*[x×X*]\s*(\d{1,9})", part)
        if m and int(m[1]) >= 1 and int(m[2]) >= 1:
            shapes[f"your layer {len(shapes) + 1}"] = (int(m[1]), int(m[2]))
        else:
            bad.append(part)
    return shapes, bad
