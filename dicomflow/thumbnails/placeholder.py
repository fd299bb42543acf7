"""Labelled placeholder images for series that have no picture of their own to show."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from dicomflow.thumbnails.imaging import encode_png

__all__ = ["placeholder_image", "placeholder_png"]

_BACKGROUND = (48, 52, 60)
_FOREGROUND = (230, 230, 230)


def placeholder_image(text: str, *, size: tuple[int, int] = (300, 200)) -> Image.Image:
    """Draw ``text`` centred and word-wrapped on a dark background.

    Parameters
    ----------
    text
        The label, e.g. ``"SEG — reference series not available"``.
    size
        ``(width, height)`` in pixels.

    Returns
    -------
    PIL.Image.Image
        An RGB image.
    """
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font_size = max(10, size[1] // 12)
    font = ImageFont.load_default(size=font_size)
    # Rough characters-per-line from the font size; Pillow has no text layout engine.
    width_chars = max(8, int(size[0] / (font_size * 0.55)))
    lines = textwrap.wrap(text, width=width_chars) or [""]
    line_height = int(font_size * 1.3)
    top = (size[1] - line_height * len(lines)) // 2
    for number, line in enumerate(lines):
        left, _, right, _ = draw.textbbox((0, 0), line, font=font)
        x = (size[0] - (right - left)) // 2
        draw.text((x, top + number * line_height), line, font=font, fill=_FOREGROUND)
    draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=(110, 115, 125), width=2)
    return image


def placeholder_png(text: str, *, size: tuple[int, int] = (300, 200)) -> bytes:
    """:func:`placeholder_image` encoded as PNG."""
    return encode_png(placeholder_image(text, size=size))
