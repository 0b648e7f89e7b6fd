"""The analytics report's files rendered from query results (sparkify.report): pure functions,
no warehouse, no S3, no Airflow. Expected values are written out by hand or read back with
the standard library's csv and html parsers."""

from __future__ import annotations

import base64
import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from sparkify.report import QueryResult, ReportFile, render_report
from sparkify.report.chart import chart_label, render_chart
from sparkify.report.tables import render_html, to_csv

GENERATED_AT = datetime(2018, 11, 2, 3, 4, 5, tzinfo=timezone.utc)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def hours(plays_at: dict[int, int]) -> QueryResult:
    rows = [(hour, plays_at.get(hour, 0), min(plays_at.get(hour, 0), 3)) for hour in range(24)]
    return QueryResult("plays_by_hour", "SELECT …", ["hour", "plays", "listeners"], rows)


def level_share() -> QueryResult:
    return QueryResult("level_share", "SELECT …", ["level", "plays", "users", "share_pct"],
                       [("free", 3, 2, Decimal("37.50")), ("paid", 5, 1, Decimal("62.50")), (None, 0, 0, Decimal("0"))])


def render(results, **kwargs):
    args = {"title": "Sparkify analytics", "generated_at": GENERATED_AT, "run_id": "manual__1", "dialect": "postgres"}
    return render_report(results, **{**args, **kwargs})


class Page(HTMLParser):
    """The page's tables (cell text and class), links and images, as a browser reads them."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self._cell: list | None = None
        self._heading: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ["", attrs.get("class")]
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("h1", "h2"):
            self._heading = [""]

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(tuple(self._cell))
            self._cell = None
        elif tag in ("h1", "h2"):
            self.headings.append(self._heading[0])
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if self._heading is not None:
            self._heading[0] += data


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_writes_nulls_empty_dates_iso_and_decimals_without_exponent():
    result = QueryResult("mixed", "SELECT …", ["day", "at", "amount", "name", "missing", "flag"], [
        (date(2018, 11, 1), datetime(2018, 11, 1, 5, 6, 7), Decimal("1E+2"), 'Say "hi", then go', None, True),
        (date(2018, 11, 2), datetime(2018, 11, 2, 0, 0), Decimal("0.50"), "Sigur Rós", None, False),
    ])
    assert to_csv(result) == (
        "day,at,amount,name,missing,flag\n"
        '2018-11-01,2018-11-01T05:06:07,100,"Say ""hi"", then go",,True\n'
        "2018-11-02,2018-11-02T00:00:00,0.50,Sigur Rós,,False\n"
    )


def test_csv_of_an_empty_result_is_its_header():
    assert to_csv(QueryResult("top_songs", "SELECT …", ["song_id", "plays"], [])) == "song_id,plays\n"


# -- the page ------------------------------------------------------------------------------------


def test_page_escapes_text_and_right_aligns_numbers_only():
    result = QueryResult("top_songs", "SELECT …", ["title", "plays", "share", "flag", "<col>"],
                         [("<b>Tom & Jerry</b>", 7, Decimal("12.5"), True, 1.5)])
    page = render_html([result], title="A <report>", generated_at=GENERATED_AT, run_id="run<1>", dialect="redshift",
                       chart=None)
    assert "<b>Tom" not in page and "<report>" not in page and "run<1>" not in page
    parsed = Page(page)
    assert parsed.headings == ["A <report>", "Top songs"]  # the query's title, not its name
    (table,) = parsed.tables
    assert table == [
        [("title", None), ("plays", None), ("share", None), ("flag", None), ("<col>", None)],
        # bool is an int to Python, but not a number to a reader
        [("<b>Tom & Jerry</b>", None), ("7", "num"), ("12.5", "num"), ("True", None), ("1.5", "num")],
    ]
    assert "Generated 2018-11-02T03:04:05+00:00 by Airflow run" in page and "from the redshift warehouse" in page
    assert parsed.images == []


def test_page_shows_the_first_50_rows_and_links_the_csv_for_the_rest():
    result = QueryResult("top_artists", "SELECT …", ["artist_id", "plays"], [(f"AR{i:03d}", 200 - i) for i in range(73)])
    parsed = Page(render_html([result], title="t", generated_at=GENERATED_AT, run_id="r", dialect="postgres", chart=None))
    (table,) = parsed.tables
    assert len(table) == 1 + 50
    assert table[-1] == [("AR049", None), ("151", "num")]
    assert parsed.links == ["top_artists.csv", "top_artists.csv"]  # the data list, and "23 more rows in"
    page = render_html([result], title="t", generated_at=GENERATED_AT, run_id="r", dialect="postgres", chart=None)
    assert "<p>23 more rows in" in page


def test_page_embeds_the_chart_it_is_given():
    chart = PNG_SIGNATURE + b"not really a png"
    parsed = Page(render_html([hours({})], title="t", generated_at=GENERATED_AT, run_id="r", dialect="postgres",
                              chart=chart))
    (src,) = parsed.images
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == chart


# -- the chart -----------------------------------------------------------------------------------


def test_no_chart_without_a_charted_query():
    other = QueryResult("something_else", "SELECT 1", ["x"], [(1,)])
    assert render_chart({}) is None
    assert render_chart({"something_else": other}) is None


def test_chart_draws_every_panel_including_empty_ones():
    top_songs = QueryResult("top_songs", "SELECT …", ["song_id", "title", "artist_name", "plays", "listeners"],
                            [("SO1", "雨の日", "アーティスト", 4, 2), ("SO2", "", "B", 3, 1), ("SO3", "x" * 40, "C", 2, 2)])
    top_artists = QueryResult("top_artists", "SELECT …", ["artist_id", "artist_name", "plays", "songs_played", "listeners"],
                              [])  # nothing loaded: a "no plays" panel, not an error
    days = QueryResult("active_users_per_day", "SELECT …", ["day", "active_users", "paid_users", "free_users", "plays"],
                       [(date(2018, 11, day), 5, 2, 3, 9) for day in range(1, 7)])
    png = render_chart({r.name: r for r in (hours({3: 5, 17: 2}), top_songs, top_artists, days, level_share())})
    assert png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 1200)  # 14 x (4 x three rows) inches at 100 dpi


def test_chart_height_follows_the_rows_present():
    png = render_chart({"plays_by_hour": hours({})})
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1400, 400)


def test_chart_labels_fall_back_to_the_id_and_are_shortened():
    ascii_only = {ord(char) for char in "abcdefghijklmnopqrstuvwxyz"}
    assert chart_label("short", "SO1", ascii_only) == "short"
    assert chart_label(None, "SO1", ascii_only) == "SO1"
    assert chart_label("", "SO1", ascii_only) == "SO1"
    assert chart_label("雨の日", "SO1", ascii_only) == "SO1"  # no font for it
    assert chart_label("a b", "SO1", ascii_only) == "a b"  # spaces need no glyph
    assert chart_label("雨の日", "SO1", set()) == "雨の日"  # fonts unknown: keep the name
    long = "abcdefghij" * 4
    assert chart_label(long, "SO1", ascii_only) == long[:31] + "…"
    assert len(chart_label(long, "SO1", ascii_only)) == 32
    assert chart_label(long[:32], "SO1", ascii_only) == long[:32]


# -- the report's files --------------------------------------------------------------------------


def test_report_files_in_publishing_order_with_their_content_types():
    results = [hours({0: 1}), level_share()]
    files = render(results)
    assert all(isinstance(file, ReportFile) for file in files)
    assert [(file.name, file.content_type) for file in files] == [
        ("plays_by_hour.csv", "text/csv; charset=utf-8"),
        ("level_share.csv", "text/csv; charset=utf-8"),
        ("chart.png", "image/png"),
        ("index.html", "text/html; charset=utf-8"),  # last: what it links to exists by then
    ]
    by_name = {file.name: file.body for file in files}
    rows = list(csv.reader(io.StringIO(by_name["level_share.csv"].decode("utf-8"))))
    assert rows == [["level", "plays", "users", "share_pct"], ["free", "3", "2", "37.50"], ["paid", "5", "1", "62.50"],
                    ["", "0", "0", "0"]]
    assert by_name["chart.png"].startswith(PNG_SIGNATURE)
    page = Page(by_name["index.html"].decode("utf-8"))
    assert page.links == ["plays_by_hour.csv", "level_share.csv"]
    (src,) = page.images
    assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == by_name["chart.png"]
    assert [len(table) for table in page.tables] == [1 + 24, 1 + 3]


def test_report_without_charted_queries_has_no_chart():
    files = render([QueryResult("custom", "SELECT 1 AS one", ["one"], [(1,)])], title="Custom")
    assert [file.name for file in files] == ["custom.csv", "index.html"]
    assert files[0].body == b"one\n1\n"
    page = Page(files[1].body.decode("utf-8"))
    assert page.images == [] and page.headings == ["Custom", "custom"]


@pytest.mark.parametrize("title", ["Sparkify analytics", "Ünïcode & <more>"])
def test_report_page_is_utf8(title):
    page = render([hours({})], title=title)[-1].body.decode("utf-8")
    assert Page(page).headings[0] == title
