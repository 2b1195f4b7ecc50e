"""The page kinds' colours as Textual theme variables.

The colours are tools/vocabulary.py's (the HTML report paints the same ones); here they
become CSS variables of the current theme, so that switching theme recomputes them and
a theme may set its own (``Theme(variables={"page-xbzrle": ...})``):

- ``$page-<kind>``: the page map, legend, timeline and block list (cells and bars):
  the vocabulary's colour, moved towards the theme's foreground only as far as needed
  for a contrast of at least 3:1 (WCAG, graphics) against the map's background;
- ``$page-<kind>-text``: the record table's text, at least 4.5:1 (WCAG AA, text);
- ``$page-never``: pages never sent stay faint (that is the point): the vocabulary's
  grey on a dark theme, the theme background a third of the way to it on a light one;
- ``$page-map-background``: the theme's background.

On the dark default theme every colour is the vocabulary's own; on a light theme the
yellow of XBZRLE, say, darkens until it reads on white.
"""

from __future__ import annotations

from textual.color import Color
from textual.theme import Theme

from ..tools.vocabulary import PAGE_KINDS
from ..tools.vocabulary import PageKind
from .pagemap import STATE_CLASSES

GRAPHICS_CONTRAST = 3.0
TEXT_CONTRAST = 4.5


def contrast(a: Color, b: Color) -> float:
    """WCAG 2 contrast ratio of two opaque colours (1 to 21)."""

    def luminance(c: Color) -> float:
        def channel(v: int) -> float:
            s = v / 255
            return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def readable(colour: Color, background: Color, ratio: float) -> Color:
    """``colour``, or the least blend of it towards black or white (whichever is
    further from ``background``) that has ``ratio`` against it."""
    if contrast(colour, background) >= ratio:
        return colour
    towards = (
        Color(0, 0, 0)
        if contrast(Color(0, 0, 0), background) > contrast(Color(255, 255, 255), background)
        else Color(255, 255, 255)
    )
    for step in range(1, 21):
        moved = colour.blend(towards, step / 20)
        if contrast(moved, background) >= ratio:
            return moved
    return towards


def page_kind_variables(theme: Theme) -> dict[str, str]:
    """The page-kind CSS variables for ``theme`` (see the module docstring)."""
    system = theme.to_color_system().generate()
    background = Color.parse(system["background"])
    out = {"page-map-background": background.hex}
    for kind, words in PAGE_KINDS.items():
        name = _name(kind)
        colour = Color.parse(words.colour)
        if kind == PageKind.NEVER:
            out[name] = out[f"{name}-text"] = (colour if theme.dark else background.blend(colour, 1 / 3)).hex
            continue
        out[name] = readable(colour, background, GRAPHICS_CONTRAST).hex
        out[f"{name}-text"] = readable(colour, background, TEXT_CONTRAST).hex
    return out


def page_kind_css() -> str:
    """The stylesheet rules that paint page kinds, in the theme variables above: the
    app adds them to its CSS, so no colour is written twice."""
    widgets = ("PageMap", "Legend", "Timeline", "BlockList")
    rules = [
        ", ".join(f"{w} > .{cls}" for w in widgets) + f" {{ color: ${_name(kind)}; }}"
        for kind, cls in STATE_CLASSES.items()
    ]
    # The record table's text: records--zero, records--raw, ... (tui/records.py).
    rules += [
        f"RecordTable > .records--{kind.name.lower()} {{ color: ${_name(kind)}-text; }}"
        for kind in PageKind
        if kind != PageKind.NEVER
    ]
    return "\n".join(rules)


def _name(kind: PageKind) -> str:
    return f"page-{kind.name.lower()}"
