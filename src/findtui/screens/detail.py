"""The detail screen: one response identifier, whole, as a tree (sequences included)."""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree
from textual.widgets.tree import TreeNode

from findtui.engine import display
from findtui.engine.phi import PhiMask, is_phi
from findtui.engine.query import FindRequest, IdentifierDecodeError, Pending
from findtui.engine.hierarchy import request_level
from findtui.engine.sanitize import visible

MAX_VALUE = 256  # characters of one value shown; the rest is elided


def value_text(elem: DataElement) -> str:
    """An element's value as one display line (raw: PN as sent, numbers as they are)."""
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, (bytes, bytearray)):
        head = value[:32].hex(" ")
        return f"<{len(value)} bytes> {head}{' …' if len(value) > 32 else ''}"
    if isinstance(value, (MultiValue, list, tuple)):
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = str(value)
    text = visible(text)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def element_label(elem: DataElement, value: str, mask: PhiMask | None = None) -> Text:
    tag = elem.tag
    name = elem.keyword or ("Private tag" if tag.is_private else elem.name) or "Unknown"
    label = Text.assemble(
        (f"({tag.group:04X},{tag.element:04X}) ", "dim"),
        (f"{elem.VR:<2} ", "dim"),
        (f"{visible(name):<30}", "bold"),
    )
    if value:
        label.append(" ")
        fmt = display.formatter(elem.keyword or "", elem.VR)
        readable = fmt(value) if fmt is not None and elem.VR != "SQ" else value
        if mask is not None and mask.on and elem.VR != "SQ" and is_phi(elem.keyword or ""):
            value = readable = mask.value(elem.keyword or "", value, shown=readable)
        label.append(value)
        if readable != value:  # as the results table shows it
            label.append(f"  → {readable}", style="italic")
    return label


def add_dataset(node: TreeNode, ds: Dataset, mask: PhiMask | None = None) -> int:
    """Add every element of ``ds`` under ``node`` (``mask``: patient data masked while it
    hides it); returns the number of elements."""
    count = 0
    for elem in ds:
        count += 1
        if elem.VR == "SQ":
            items = elem.value or []
            n = len(items)
            seq_node = node.add(element_label(elem, f"<{n} item{'' if n == 1 else 's'}>",
                                              mask), expand=True)
            for i, item in enumerate(items, 1):
                item_node = seq_node.add(Text(f"Item {i}", style="italic"), expand=True)
                add_dataset(item_node, item, mask)
        else:
            try:
                text = value_text(elem)
            except Exception as exc:  # a value pydicom cannot convert: say so, keep going
                text = visible(f"<unreadable: {exc}>")
            node.add_leaf(element_label(elem, text, mask))
    return count


class DetailScreen(Screen):
    """Esc / Backspace / q go back to the table."""

    BINDINGS = [
        Binding("escape,backspace,q", "close", "Back", id="detail.close"),
        Binding("plus", "expand_all", "Expand all", id="detail.expand"),
        Binding("minus", "collapse_all", "Collapse", id="detail.collapse"),
    ]

    def __init__(self, response: Pending, request: FindRequest, total: int | None = None) -> None:
        super().__init__()
        self.response = response
        self.request = request
        self.total = total

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        yield Tree(Text("Response identifier"), id="detail-tree")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        response = self.response
        of = f" of {self.total:,}" if self.total else ""
        level = request_level(self.request.identifier)
        where = self.request.model.label + (f" › {level}" if level else "")
        status = "Pending, optional keys not supported" if response.status == 0xFF01 else "Pending"
        self.query_one("#detail-title", Static).update(Content.assemble(
            ("Response ", "bold"), (f"{response.index:,}{of}", "bold $accent"),
            f" · {where} · 0x{response.status:04X} ({status})"
            f" · {response.transfer_syntax.name}",
        ))
        tree = self.query_one(Tree)
        tree.show_root = False
        self._fill()
        tree.focus()

    def _fill(self) -> None:
        tree = self.query_one(Tree)
        tree.clear()
        try:
            ds = self.response.identifier
        except IdentifierDecodeError as exc:
            tree.root.add_leaf(Text(visible(str(exc))))
        else:
            if add_dataset(tree.root, ds, self.app.phi) == 0:  # type: ignore[attr-defined]
                tree.root.add_leaf(Text("(the response identifier is empty)", style="italic"))
        tree.root.expand()

    def phi_changed(self) -> None:
        """Patient data masked or shown (Ctrl+G)."""
        self._fill()

    def action_close(self) -> None:
        self.dismiss()

    def action_expand_all(self) -> None:
        self.query_one(Tree).root.expand_all()

    def action_collapse_all(self) -> None:
        tree = self.query_one(Tree)
        for node in tree.root.children:
            node.collapse_all()
