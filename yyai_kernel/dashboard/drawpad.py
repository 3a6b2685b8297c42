"""The drawing pad: draw an input by hand, for models with small grayscale inputs (the digits).

An ipycanvas ``Canvas`` shows the strokes as a person draws them (white on black, as the
digits were written). The kernel keeps each stroke's points and rasterizes them itself with
OpenCV at the pad's size, so the image sent is exactly what the strokes say, with no round
trip of the canvas's pixels from the browser. The server then shrinks it to the model's
input like any other image. ipycanvas and OpenCV are imported when the pad is first built:
a page that never draws loads neither in its kernel.

Mouse events arrive on the kernel's main thread, one message each; nothing else touches
the pad, so it needs no lock.
"""

from __future__ import annotations

import ipywidgets as W

from yyai_kernel.dashboard.render import subtle_html, with_classes
from yyai_kernel.types import InputSpec

PAD_PX = 192  # the pad's side, in pixels (canvas and rasterized image alike)
MAX_INPUT_SIDE = 64  # a model whose input is at most this many pixels a side, in one channel, gets the pad
STROKE_INPUT_PIXELS = 1.5  # a stroke is this many of the model's input pixels wide


def pad_fits(input_spec: InputSpec) -> bool:
    """Whether a version takes small one-channel images: drawing is a sensible input for it."""
    grid = input_spec.image_grid()
    if grid is None or grid[2] != 1:
        return False
    return max(grid[0], grid[1]) <= MAX_INPUT_SIDE


class DrawingPad:
    """A canvas to draw on, a Clear button, and the drawing as PNG bytes (:meth:`png`)."""

    def __init__(self):
        from ipycanvas import Canvas

        self.canvas = with_classes(Canvas(width=PAD_PX, height=PAD_PX,
                                          layout=W.Layout(width=f"{PAD_PX}px", height=f"{PAD_PX}px")),
                                   "yyai-drawing-pad")
        self.clear_button = with_classes(W.Button(description="Clear", icon="eraser", tooltip="Start a new drawing",
                                                  layout=W.Layout(width="90px")), "yyai-clear-drawing")
        self.note = with_classes(W.HTML(subtle_html("Draw with the mouse, then press Predict.")), "yyai-drawing-note")
        self.widget = W.VBox([self.canvas, W.HBox([self.clear_button, self.note])])
        self.strokes: list[list[tuple[float, float]]] = []
        self.line_width = 24.0
        self._pen_down = False
        self.canvas.on_mouse_down(self._down)
        self.canvas.on_mouse_move(self._move)
        self.canvas.on_mouse_up(self._up)
        self.canvas.on_mouse_out(self._up)
        self.clear_button.on_click(lambda _: self.clear())
        self.clear()

    def set_input(self, input_spec: InputSpec) -> None:
        """Size the pen for a model's input: a stroke about ``STROKE_INPUT_PIXELS`` input pixels wide."""
        grid = input_spec.image_grid()
        side = min(grid[:2]) if grid is not None else min(input_spec.shape[:2])
        self.line_width = max(4.0, min(40.0, PAD_PX / max(1, side) * STROKE_INPUT_PIXELS))
        self.canvas.line_width = self.line_width

    def clear(self) -> None:
        self.strokes = []
        self._pen_down = False
        self.canvas.fill_style = "black"
        self.canvas.fill_rect(0, 0, PAD_PX, PAD_PX)
        self.canvas.stroke_style, self.canvas.fill_style = "white", "white"
        self.canvas.line_cap, self.canvas.line_join = "round", "round"
        self.canvas.line_width = self.line_width

    def _down(self, x: float, y: float) -> None:
        self._pen_down = True
        self.strokes.append([(x, y)])
        self.canvas.fill_circle(x, y, self.line_width / 2)

    def _move(self, x: float, y: float) -> None:
        if not self._pen_down:
            return
        last = self.strokes[-1][-1]
        self.strokes[-1].append((x, y))
        self.canvas.stroke_line(last[0], last[1], x, y)

    def _up(self, x: float, y: float) -> None:
        if self._pen_down:
            self._move(x, y)
        self._pen_down = False

    def image(self):
        """The drawing as a ``PAD_PX`` square gray uint8 image, white strokes on black."""
        import cv2
        import numpy as np

        image = np.zeros((PAD_PX, PAD_PX), np.uint8)
        width = max(1, round(self.line_width))
        for stroke in self.strokes:
            points = np.round(np.array(stroke, dtype=np.float64)).astype(np.int32)
            if len(points) == 1:
                cv2.circle(image, tuple(int(v) for v in points[0]), width // 2, 255, -1, cv2.LINE_AA)
            else:
                cv2.polylines(image, [points], False, 255, width, cv2.LINE_AA)
        return image

    def png(self) -> bytes:
        """The drawing as PNG bytes; ValueError when nothing was drawn."""
        from yyai_kernel.runtime.images import encode_png

        if not self.strokes:
            raise ValueError("Draw something on the pad first.")
        return encode_png(self.image())
