"""A small PNG of a dashboard as a ``data:`` URI (Dagster's Markdown metadata shows it inline)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

__all__ = ["thumbnail_data_uri"]


def thumbnail_data_uri(png_path: Path | str, width: int = 320) -> str:
    """``data:image/png;base64,...`` of the image at ``png_path`` scaled to ``width`` pixels wide
    (aspect ratio kept, height at least 1), as a 256-colour palette PNG.

    Pillow comes with matplotlib (one of its requirements), so it is always there.

    Raises:
        ValueError: ``width`` not an integer in ``[8, 4096]``; ``png_path`` missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(width, bool) or not isinstance(width, int) or not 8 <= width <= 4096:
        raise ValueError(f"width must be an integer in [8, 4096], got {width!r}")
    p = Path(png_path)
    if not p.is_file():
        raise ValueError(f"{p}: no such image file")
    try:
        with Image.open(p) as img:
            img = img.convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"{p}: not an image file") from None
    height = max(1, round(img.height * width / img.width))
    # a 256-colour palette keeps a dashboard legible at about half the bytes of RGB (the URI is
    # stored in every materialization's metadata)
    small = img.resize((width, height), Image.Resampling.LANCZOS).quantize(256)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
