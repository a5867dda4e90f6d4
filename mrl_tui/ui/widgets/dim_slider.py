"""The prefix-dimension slider: steps of 8; shift+arrows jump between powers of two and the
dims the model was trained at (for native Matryoshka models)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual_slider import Slider

from mrl_tui.core.search.compare import power_of_two_dims

STEP = 8
STEP_HELP = f"slider: dimension −{STEP} / +{STEP}"
JUMP_HELP = "slider: previous / next power of two (or a dim the model was trained at, or full)"


class DimSlider(Slider):
    """A `Slider` from 8 to the model's full dimension; posts `Slider.Changed` as it moves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "slide_left", "-8 dims", show=False, tooltip=STEP_HELP),
        Binding("right", "slide_right", "+8 dims", show=False, tooltip=STEP_HELP),
        Binding("shift+left", "jump(-1)", "previous stop", show=False, tooltip=JUMP_HELP),
        Binding("shift+right", "jump(1)", "next stop", show=False, tooltip=JUMP_HELP),
    ]

    def __init__(
        self,
        full_dim: int,
        value: int,
        *,
        trained_dims: tuple[int, ...] = (),
        id: str | None = None,
    ) -> None:
        super().__init__(STEP, full_dim, step=STEP, value=value, id=id)
        trained = [d for d in trained_dims if STEP <= d <= full_dim]
        self.stops = sorted({*power_of_two_dims(full_dim), *trained})

    def action_jump(self, direction: int) -> None:
        """Go to the next stop (power of two, trained dim or full) above or below the value."""
        if direction > 0:
            bigger = [d for d in self.stops if d > self.value]
            self.value = bigger[0] if bigger else self.max
        else:
            smaller = [d for d in self.stops if d < self.value]
            self.value = smaller[-1] if smaller else self.min
