"""Textual's toggles with a glyph for each state: ``[x]``/``[ ]`` checkboxes, ``(•)``/``( )``
radio buttons, ``[x]``/``[ ]`` in selection lists.

Textual draws the same glyph on and off and tells them apart by colour only, which
NO_COLOR, a monochrome terminal or a colour-blind user loses. These subclasses change
only the glyph; the rest (bindings, messages, CSS, RadioSet) is Textual's.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Checkbox as _Checkbox
from textual.widgets import RadioButton as _RadioButton
from textual.widgets import RadioSet, SelectionList as _SelectionList
from textual.widgets._selection_list import SelectionType
from textual.widgets._toggle_button import ToggleButton

__all__ = ["Checkbox", "RadioButton", "RadioSet", "SelectionList"]


class _StateGlyph(ToggleButton):
    GLYPHS = ("[", "x", " ", "]")  # left, on, off, right

    @property
    def _button(self) -> Content:
        left, on, off, right = self.GLYPHS
        return Content.assemble(
            left, (on if self.value else off, self.get_visual_style("toggle--button")), right,
            " ")


class Checkbox(_StateGlyph, _Checkbox):
    """A checkbox drawn ``[x]`` when on, ``[ ]`` when off."""

    GLYPHS = ("[", "x", " ", "]")


class RadioButton(_StateGlyph, _RadioButton):
    """A radio button drawn ``(•)`` when on, ``( )`` when off."""

    GLYPHS = ("(", "•", " ", ")")


class SelectionList(_SelectionList[SelectionType]):
    """A selection list whose selected options read ``[x]``, the others ``[ ]``, and whose
    highlighted option is on screen when it gets focus or resizes."""

    def _on_focus(self, event) -> None:
        super()._on_focus(event)
        self.call_after_refresh(self.scroll_to_highlight)

    def _on_resize(self) -> None:
        super()._on_resize()
        self.call_after_refresh(self.scroll_to_highlight)

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        index = int(self.scroll_offset.y) + y
        if not 0 <= index < self.option_count:
            return line
        segments = list(line)
        if len(segments) < 4:
            return line
        selected = self.get_option_at_index(index).value in self._selected
        # the brackets in the line's own style (the space after them), with the option's
        # meta (a click on them toggles it)
        side = (segments[3].style or Style()) + Style.from_meta(
            segments[0].style.meta if segments[0].style else {})
        segments[0] = Segment("[", side)
        segments[1] = Segment("x" if selected else " ", segments[1].style)
        segments[2] = Segment("]", side)
        return Strip(segments, line.cell_length)
