"""A font for Chinese, Japanese and Korean tokens in matplotlib figures.

matplotlib's default font (DejaVu Sans) has no CJK glyphs: "我是学生" would be drawn as empty boxes with a
"Glyph … missing from font(s)" warning. ``use_cjk_font()`` finds a font that covers CJK and puts it first in
matplotlib's font list; DejaVu Sans stays behind it as the per-glyph fallback (matplotlib ≥ 3.6), so Latin
text and symbols such as "▁" still render.

Where we look, in order:

1. ``$ROSETTA_CJK_FONT`` — a font file you choose;
2. the font that comes with rosetta: the PyPI package ``noto-cjk-sans-otc`` (a dependency, so ``pip install``
   brings it; Noto Sans CJK Regular, SIL OFL 1.1) — no system package is needed;
3. well-known system files, as fallbacks: WenQuanYi (Debian/Ubuntu ``fonts-wqy-microhei``), Noto CJK and
   Source Han (``fonts-noto-cjk``), Droid Sans Fallback, and the system fonts of macOS and Windows;
4. every font matplotlib knows (``font_manager.fontManager.ttflist``) whose name says CJK.

A candidate counts only if its character map really holds the test characters. If none is found the
figures are still written, with a warning that says how to get one.

Font collections (``.ttc``) hold several faces: Noto Sans CJK has JP, KR, SC, TC and HK, which share most
glyphs but draw some Han characters the way each region writes them (学, 直, 骨 …). Our readers are mostly
Chinese, so the Simplified Chinese face is chosen when the file has one (a family name with "SC", e.g.
"Noto Sans CJK SC"); otherwise face 0. Choosing a face needs matplotlib ≥ 3.11, whose ``FT2Font`` takes a
``face_index`` and whose ``FontManager.addfont`` registers every face of a collection; with an older
matplotlib the first face (for Noto Sans CJK: JP, which still covers Chinese) is used.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

# Han (Chinese), kana (Japanese), Hangul (Korean): a font must have all three to be chosen first.
PROBE_CHARS = "学生中文。あア한"
INSTALL_HINT = ("reinstall rosetta's dependency `pip install noto-cjk-sans-otc` (Noto Sans CJK, no system "
                "package needed), or install a system font, e.g. `apt-get install fonts-wqy-microhei` "
                "(Debian/Ubuntu) or `fonts-noto-cjk`, or point $ROSETTA_CJK_FONT at a .ttf/.otf/.ttc file")

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


class CJKFont(NamedTuple):
    """A font chosen for CJK text: the file, the face inside it (0 unless a collection), its family name."""

    path: Path
    face_index: int
    name: str


def packaged_font() -> Path | None:
    """The Noto Sans CJK collection of the ``noto-cjk-sans-otc`` package, or None if it is not installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = Path(str(noto_cjk_sans_otc.FONT_PATH))  # an importlib.resources Traversable: a real file once installed
    return path if path.is_file() else None


def faces_supported() -> bool:
    """True if this matplotlib can draw a chosen face of a collection (3.11: FT2Font's face_index, FontPath)."""
    from matplotlib import font_manager

    return hasattr(font_manager, "FontPath")


def _open(path: str | Path, face_index: int = 0):
    from matplotlib import ft2font

    if face_index:
        return ft2font.FT2Font(str(path), face_index=face_index)
    return ft2font.FT2Font(str(path))


def covers(path: str | Path, chars: str = PROBE_CHARS, face_index: int = 0) -> bool:
    """True if the font's character map (face ``face_index`` of a collection) has a glyph for every one of ``chars``."""
    try:
        charmap = _open(path, face_index).get_charmap()
    except (OSError, RuntimeError, ValueError, TypeError):
        return False
    return all(ord(c) in charmap for c in chars)


def chinese_face(path: str | Path) -> int:
    """The face of ``path`` to draw Chinese with: the first non-monospaced Simplified Chinese face ("… SC") of a
    collection whose matplotlib supports faces, else 0."""
    try:
        font = _open(path)
    except (OSError, RuntimeError, ValueError):
        return 0
    if font.num_faces < 2 or not faces_supported():
        return 0
    for index in range(font.num_faces):
        face = _open(path, index)
        words = face.family_name.split()
        if "SC" in words and "Mono" not in words and covers(path, PROBE_CHARS[:5], index):
            return index
    return 0


def candidate_files() -> list[Path]:
    """Font files to try, best guesses first (see the module docstring)."""
    from matplotlib import font_manager

    found = []
    if os.environ.get("ROSETTA_CJK_FONT"):
        found.append(Path(os.environ["ROSETTA_CJK_FONT"]))
    if (packaged := packaged_font()) is not None:
        found.append(packaged)
    found += [Path(p) for p in KNOWN_FILES]
    known = sorted(font_manager.fontManager.ttflist, key=lambda f: f.fname)
    found += [Path(f.fname) for f in known if any(h in f.name.lower() for h in NAME_HINTS)]
    found = [p.resolve() for p in found if p.is_file()]
    return list(dict.fromkeys(found))


def _chosen(path: Path) -> CJKFont:
    from matplotlib import font_manager

    index = chinese_face(path)
    return CJKFont(path, index, font_manager.ttfFontProperty(_open(path, index)).name)  # the name addfont registers


@lru_cache(maxsize=1)
def find_cjk_face() -> CJKFont | None:
    """The first font that covers CJK, with the face to use (see the module docstring), or None."""
    for path in candidate_files():
        if covers(path):
            return _chosen(path)
    for path in candidate_files():  # second chance: a Chinese-only font (no kana or Hangul) beats none
        if covers(path, PROBE_CHARS[:5]):
            return _chosen(path)
    return None


def find_cjk_font() -> Path | None:
    """The file of the first font that covers CJK (resolved, as matplotlib's ``findfont`` reports it), or None."""
    font = find_cjk_face()
    return None if font is None else font.path


def use_cjk_font(warn: bool = True) -> str | None:
    """Make matplotlib draw CJK text with a font that has the glyphs; return that font's family name (for the
    packaged Noto Sans CJK with matplotlib ≥ 3.11: "Noto Sans CJK SC").

    Returns None (and warns, unless ``warn`` is False) when no such font is found.
    """
    import matplotlib
    from matplotlib import font_manager

    font = find_cjk_face()
    if font is None:
        if warn:
            warnings.warn(f"no font with Chinese/Japanese/Korean glyphs was found, so CJK tokens will be drawn as "
                          f"boxes; {INSTALL_HINT}", stacklevel=2)
        return None
    manager = font_manager.fontManager
    mine = str(font.path)
    if not any(os.path.realpath(f.fname) == mine for f in manager.ttflist):
        manager.addfont(mine)  # every face of a collection (matplotlib ≥ 3.11), once per process
    if manager.ttflist[0].fname != mine:
        # the same family may also be installed elsewhere (e.g. fonts-noto-cjk): on equal scores findfont takes
        # the first entry, so ours go first (a stable sort keeps the order of everything else)
        manager.ttflist.sort(key=lambda f: os.path.realpath(f.fname) != mine)
        if hasattr(manager, "_findfont_cached"):
            manager._findfont_cached.cache_clear()
    fallback = [f for f in matplotlib.rcParams["font.sans-serif"] if f != font.name]
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [font.name, "DejaVu Sans", *fallback]
    matplotlib.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212 (the minus sign)
    return font.name
