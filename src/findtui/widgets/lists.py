"""Lists whose highlighted line is always on screen.

Textual scrolls an option list when its highlight moves, but not when the list is
refilled or resized, or when focus arrives: the line Enter or Del acts on could be
out of view. This keeps it in view on focus and on resize.
"""

from __future__ import annotations

from textual.widgets import OptionList


class HighlightInView(OptionList):
    """An option list that shows its highlighted option whenever it gets focus or resizes."""

    def highlight_in_view(self) -> bool:
        """Is the highlighted option's first line inside the visible part of the list?"""
        if self.highlighted is None:
            return False
        self._update_lines()
        line = self._index_to_line.get(self.highlighted, self.highlighted)
        top, height = round(self.scroll_y), self.scrollable_content_region.height
        return top <= line < top + height

    def _on_focus(self, event) -> None:
        super()._on_focus(event)
        self.call_after_refresh(self.scroll_to_highlight)

    def _on_resize(self) -> None:
        super()._on_resize()
        self.call_after_refresh(self.scroll_to_highlight)
