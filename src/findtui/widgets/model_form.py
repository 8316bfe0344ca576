"""Information model + QueryRetrieveLevel, and the extended-negotiation toggles."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Select

from findtui.widgets.toggles import Checkbox

from findtui.engine.models import ExtendedNegotiation, QueryModel

# The Q/R-only flags: the seed (-W) refuses them with the worklist model.
NOT_FOR_WORKLIST = ("relational", "dt_matching", "enhanced_conversion")
SHORT_NAMES = {
    "relational": "Relational queries",
    "dt_matching": "Date-time matching",
    "fuzzy_names": "Fuzzy name matching",
    "timezone_adj": "Timezone adjustment",
    "enhanced_conversion": "Enhanced conversion",
}
# The default level a model opens at.
DEFAULT_LEVEL = {
    QueryModel.PATIENT: "PATIENT",
    QueryModel.STUDY: "STUDY",
    QueryModel.PSONLY: "PATIENT",
    QueryModel.WORKLIST: "",
}


class ModelForm(Vertical):
    """Model and level selects; posts ModelForm.Changed when the user changes either."""

    class Changed(Message):
        def __init__(self, model: QueryModel, level: str) -> None:
            super().__init__()
            self.model = model
            self.level = level

    def __init__(self, model: QueryModel = QueryModel.STUDY, level: str = "STUDY", **kwargs) -> None:
        super().__init__(**kwargs)
        self._model = model
        self._level = level

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Model", classes="form-label")
            yield Select([(m.label, m) for m in QueryModel], value=self._model, allow_blank=False,
                         id="model", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("Level", classes="form-label")
            yield Select(self._level_options(self._model), value=self._level or "",
                         allow_blank=False, id="level", compact=True,
                         disabled=self._model is QueryModel.WORKLIST)

    @staticmethod
    def _level_options(model: QueryModel) -> list[tuple[str, str]]:
        if not model.levels:
            return [("(none: worklist)", "")]
        return [(level, level) for level in model.levels]

    @property
    def model(self) -> QueryModel:
        return self._model

    @property
    def level(self) -> str:
        return self._level

    def fill(self, model: QueryModel, level: str | None) -> None:
        """Set model and level without posting Changed (a programmatic fill)."""
        if level is None or (model.levels and level not in model.levels):
            level = DEFAULT_LEVEL[model]
        if not model.levels:
            level = ""
        self._model, self._level = model, level
        model_select = self.query_one("#model", Select)
        level_select = self.query_one("#level", Select)
        with self.prevent(Select.Changed):
            model_select.value = model
            level_select.set_options(self._level_options(model))
            level_select.value = level
            level_select.disabled = not model.levels

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "model":
            model = event.value
            if model is self._model or not isinstance(model, QueryModel):
                return
            self.fill(model, self._level if self._level in model.levels else None)
        elif event.select.id == "level":
            if event.value == self._level or not isinstance(event.value, str):
                return
            self._level = event.value
        self.post_message(self.Changed(self._model, self._level))


class ExtNegForm(Vertical):
    """The five extended-negotiation flags; the Q/R-only ones are disabled for worklist."""

    def compose(self) -> ComposeResult:
        yield Label("Extended negotiation", classes="form-title")
        with Grid(id="extneg-grid"):
            for name, description, flag in ExtendedNegotiation.NAMES:
                box = Checkbox(SHORT_NAMES[name], id=f"ext-{name}", compact=True)
                box.tooltip = f"Ask for {description} ({flag})"
                yield box

    def set_model(self, model: QueryModel) -> None:
        for name in NOT_FOR_WORKLIST:
            box = self.query_one(f"#ext-{name}", Checkbox)
            if model is QueryModel.WORKLIST:
                box.value = False
            box.disabled = model is QueryModel.WORKLIST

    def ext_neg(self) -> ExtendedNegotiation:
        return ExtendedNegotiation(**{
            name: self.query_one(f"#ext-{name}", Checkbox).value
            for name, _, _ in ExtendedNegotiation.NAMES
        })

    def fill(self, ext_neg: ExtendedNegotiation, model: QueryModel) -> None:
        for name, _, _ in ExtendedNegotiation.NAMES:
            self.query_one(f"#ext-{name}", Checkbox).value = getattr(ext_neg, name)
        self.set_model(model)
