"""A font for Chinese, Japanese and Korean tokens in matplotlib figures.

matplotlib's default font (DejaVu Sans) has no CJK glyphs: "我是学生" would be drawn as empty boxes with a
"Glyph … missing from font(s)" warning. ``use_cjk_font()`` finds an installed font that covers CJK and puts it
first in matplotlib's font list; DejaVu Sans stays behind it as the per-glyph fallback (matplotlib ≥ 3.6), so
Latin text and symbols such as "▁" still render.

Where we look, in order:

1. ``$ROSETTA_CJK_FONT`` — a font file you choose;
2. well-known files: WenQuanYi (Debian/Ubuntu ``fonts-wqy-microhei``, installed by ``.ci/run``), Noto CJK
   and Source Han (``fonts-noto-cjk``), Droid Sans Fallback, and the system fonts of macOS and Windows;
3. every font matplotlib knows (``font_manager.fontManager.ttflist``) whose name says CJK.

A candidate counts only if its character map really holds the test characters. If none is found the
figures are still written, with a warning that says how to install one.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

# Han (Chinese), kana (Japanese), Hangul (Korean): a font must have all three to be chosen first.
PROBE_CHARS = "学生中文。あア한"
INSTALL_HINT = ("install one, e.g. `apt-get install fonts-wqy-microhei` (Debian/Ubuntu) or `fonts-noto-cjk`, "
                "or point $ROSETTA_CJK_FONT at a .ttf/.otf/.ttc file")

KNOWN_FILES = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/source-han-sans/SourceHanSans-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
]
NAME_HINTS = ("wenquanyi", "wqy", "noto sans cjk", "noto serif cjk", "source han", "droid sans fallback",
              "pingfang", "heiti", "hiragino", "microsoft yahei", "simhei", "simsun", "ar pl", "arial unicode",
              "unifont")


def covers(path: str | Path, chars: str = PROBE_CHARS) -> bool:
    """True if the font file's character map has a glyph for every character of ``chars``."""
    from matplotlib import ft2font

    try:
        charmap = ft2font.FT2Font(str(path)).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(c) in charmap for c in chars)


def candidate_files() -> list[Path]:
    """Font files to try, best guesses first (see the module docstring)."""
    from matplotlib import font_manager

    found = []
    if os.environ.get("ROSETTA_CJK_FONT"):
        found.append(Path(os.environ["ROSETTA_CJK_FONT"]))
    found += [Path(p) for p in KNOWN_FILES]
    known = sorted(font_manager.fontManager.ttflist, key=lambda f: f.fname)
    found += [Path(f.fname) for f in known if any(h in f.name.lower() for h in NAME_HINTS)]
    return [p for p in dict.fromkeys(found) if p.is_file()]


@lru_cache(maxsize=1)
def find_cjk_font() -> Path | None:
    """The first font file that covers CJK, or None."""
    for path in candidate_files():
        if covers(path):
            return path
    for path in candidate_files():  # second chance: a Chinese-only font (no kana or Hangul) beats none
        if covers(path, PROBE_CHARS[:5]):
            return path
    return None


def use_cjk_font(warn: bool = True) -> str | None:
    """Make matplotlib draw CJK text with a font that has the glyphs; return that font's family name.

    Returns None (and warns, unless ``warn`` is False) when no such font is installed.
    """
    import matplotlib
    from matplotlib import font_manager

    path = find_cjk_font()
    if path is None:
        if warn:
            warnings.warn(f"no font with Chinese/Japanese/Korean glyphs was found, so CJK tokens will be drawn as "
                          f"boxes; {INSTALL_HINT}", stacklevel=2)
        return None
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    fallback = [f for f in matplotlib.rcParams["font.sans-serif"] if f != name]
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [name, "DejaVu Sans", *fallback]
    matplotlib.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212 (the minus sign)
    return name
