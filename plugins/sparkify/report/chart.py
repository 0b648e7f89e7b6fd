"""The report's chart: one PNG with a panel per charted query.

matplotlib is imported inside the functions, drawing on the Agg canvas without pyplot, so
neither DAG parsing nor other tasks pay for it and no GUI backend or global figure state is touched.
"""

from __future__ import annotations

import io
from typing import Any

from sparkify.report.tables import QUERY_TITLES, QueryResult, format_value

CHART_LAYOUT = (("plays_by_hour",), ("active_users_per_day", "level_share"), ("top_songs", "top_artists"))
# Tried in order after DejaVu Sans for glyphs it lacks (CJK artist names), when installed.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans JP", "IPAexGothic", "IPAGothic",
                  "TakaoGothic", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Arial Unicode MS")


def render_chart(results: dict[str, QueryResult]) -> bytes | None:
    """One PNG: plays per hour across the top, then active users per day and paid vs free,
    then the top songs and artists. Panels whose query is absent are left out; None when
    none is present."""
    rows = [[name for name in row if name in results] for row in CHART_LAYOUT]
    rows = [row for row in rows if row]
    if not rows:
        return None
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    families, renderable = _chart_fonts()
    with matplotlib.rc_context({"font.family": families}):
        figure = Figure(figsize=(14, 4 * len(rows)), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        figure.suptitle("Sparkify listening", fontsize=15, fontweight="bold")
        grid = figure.add_gridspec(len(rows), 2)
        for row_index, row in enumerate(rows):
            for column, name in enumerate(row):
                span = grid[row_index, :] if len(row) == 1 else grid[row_index, column]
                _draw_panel(figure.add_subplot(span), name, results[name].records(), renderable)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_panel(axes: Any, name: str, records: list[dict[str, Any]], renderable: set[int]) -> None:
    if not any(record.get("plays") for record in records):  # nothing loaded yet: say so, don't draw
        axes.set_title(QUERY_TITLES.get(name, name))
        axes.text(0.5, 0.5, "no plays loaded yet", ha="center", va="center", color="#888888", transform=axes.transAxes)
        axes.set_axis_off()
        return
    if name == "plays_by_hour":
        axes.bar([r["hour"] for r in records], [r["plays"] for r in records], color="#4C72B0")
        axes.set(title="Plays per hour of day (UTC)", xlabel="hour", ylabel="plays", xticks=range(24), xlim=(-0.6, 23.6))
    elif name == "active_users_per_day":
        days = [format_value(r["day"]) for r in records]
        positions = range(len(days))
        paid = [r["paid_users"] for r in records]
        axes.bar(positions, paid, label="played as paid", color="#55A868")
        axes.bar(positions, [r["active_users"] - p for r, p in zip(records, paid)], bottom=paid,
                 label="free only", color="#C4C4C4")
        axes.set(title="Active users per day", ylabel="users")
        axes.set_xticks(list(positions), days, rotation=45 if len(days) > 4 else 0, fontsize=8,
                        ha="right" if len(days) > 4 else "center")
        axes.legend(loc="upper left", fontsize=8)
    elif name == "level_share":
        labels = [r["level"] or "unknown" for r in records]
        axes.pie([r["plays"] for r in records], labels=labels, autopct="%1.1f%%", startangle=90, counterclock=False,
                 colors=["#55A868" if label == "paid" else "#C4C4C4" for label in labels])
        axes.set(title="Plays: paid vs free")
    else:  # top_songs / top_artists: positions, not category labels, so equal titles stay two bars
        label_key, id_key = ("title", "song_id") if name == "top_songs" else ("artist_name", "artist_id")
        top = list(reversed(records[:10]))
        axes.barh(range(len(top)), [r["plays"] for r in top], color="#DD8452")
        axes.set_yticks(range(len(top)), [chart_label(r[label_key], r[id_key], renderable) for r in top], fontsize=8)
        axes.set(title="Top songs" if name == "top_songs" else "Top artists", xlabel="plays")


def _chart_fonts() -> tuple[list[str], set[int]]:
    """Font families for the chart and the code points they can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]
    renderable: set[int] = set()
    for family in families:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            renderable.update(FT2Font(path).get_charmap())
        except Exception:  # a font we can't read just doesn't help
            continue
    return families, renderable


def chart_label(text: str | None, fallback: str, renderable: set[int]) -> str:
    """The label, shortened to 32 characters; ``fallback`` (the id) instead when it is empty or
    no available font can draw it (``renderable``: their code points; empty when unknown). The
    page's tables, drawn by the browser, still show the name."""
    if not text:
        return fallback
    if renderable and any(ord(char) not in renderable for char in text if not char.isspace()):
        return fallback
    return text if len(text) <= 32 else text[:31] + "…"
