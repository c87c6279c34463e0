"""Reddit text rendering, charts and colours of the review app (no store needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webapp.app import csv_cell, safe_target
from webapp.charts import bar_chart, integer_ticks, probability_chart
from webapp.text import Mark, decode, grade, render

STYLE = Path(__file__).resolve().parents[2] / "webapp" / "static" / "style.css"


def test_entities_are_decoded_even_when_reddit_escaped_them_twice():
    assert decode("Tom &amp;amp; Jerry &amp;#x200B;") == "Tom & Jerry "
    assert decode("&lt;3 &gt; you") == "<3 > you"
    assert decode("a\u200bb") == "ab"
    assert decode(None) == ""


def test_markdown_subset_is_rendered_and_everything_else_escaped():
    text = decode("**bold** and *it* and `x<y`\n\n> quoted &lt;b&gt;\n\n- one\n- two\n"
                  "# Heading\n[click](https://evil.example/x) <script>alert(1)</script>")
    html = str(render(text))
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<code>x&lt;y</code>" in html
    assert "<blockquote>quoted &lt;b&gt;</blockquote>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "<p><strong>Heading</strong></p>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<a " not in html and "href" not in html  # links stay text
    assert "click <span class=\"url\">(https://evil.example/x)</span>" in html
    tags = set(re.findall(r"</?([a-z]+)", html))
    assert tags <= {"p", "br", "strong", "em", "code", "blockquote", "ul", "li", "span", "mark"}


def test_marks_are_graded_by_weight_show_negation_and_nest_with_markdown():
    text = "I am **not happy** at all, so sad"
    marks = [Mark(11, 16, 0.2, True, "neg:happy"), Mark(30, 33, -0.02, False, "sad")]
    html = str(render(text, marks))
    assert '<mark class="w up-3 neg" title="neg:happy: +0.200 logit (negated)">happy</mark>' in html
    assert '<mark class="w down-1" title="sad: -0.020 logit">sad</mark>' in html
    # The emphasis crossing a mark stays literal instead of breaking the nesting.
    assert html.count("<mark") == html.count("</mark>") == 2
    assert grade(0.01) == "up-1" and grade(0.1) == "up-2" and grade(-0.5) == "down-3"


def test_overlapping_spans_add_up():
    html = str(render("hopeless", [Mark(0, 8, 0.1, False, "hopeless"),
                                   Mark(0, 8, 0.1, False, "_lex_sad")]))
    assert html.count("<mark") == 1 and "+0.200 logit" in html


@pytest.mark.parametrize("lo,hi,expected", [
    (1, 3, [1, 2, 3]), (1, 8, [1, 2, 3, 4, 5, 6, 7, 8]), (1, 12, [1, 2, 4, 6, 8, 10, 12]),
    (1, 50, [1, 10, 20, 30, 40, 50]), (3, 3, [3])])
def test_writing_ticks_are_whole_numbers_without_repeats(lo, hi, expected):
    assert integer_ticks(lo, hi) == expected


def test_writing_chart_ticks_sit_on_the_writings_with_tooltips_and_links():
    xs = [1.0, 2.0, 3.0]
    svg = probability_chart(xs, [0.2, 0.6, 0.7], [0.2, 0.9, 0.5], 0.5, 2.0,
                            lambda v: f"{v:.0f}", "By writing", "c", integer_x=True,
                            point_ids=["w1", "w2", "w3"],
                            point_labels=["writing 1", "writing 2", "writing 3"])
    labels = re.findall(r'<text class="tick" x="([0-9.]+)" y="[0-9.]+" '
                        r'text-anchor="[a-z]+">([0-9]+)</text>', svg)
    assert [t for _, t in labels] == ["1", "2", "3"]
    points = re.findall(r'<circle class="p-user-point" cx="([0-9.]+)"', svg)
    assert [x for x, _ in labels] == points  # each tick exactly under its writing
    assert svg.count('<a class="point" href="#w') == 3
    assert "<title>writing 2: p(user) 0.600, p(text) 0.900</title>" in svg
    assert '<text class="chart-title"' in svg


def test_bar_chart_has_a_visible_title_and_unit():
    svg = bar_chart(["2019-01-01", "2019-01-02"], [3, 5], "Alerts per day", "a",
                    unit="alerts per day")
    assert '<text class="chart-title" x="52" y="16">Alerts per day</text>' in svg
    assert "y axis: alerts per day" in svg and "<title>2019-01-02: 5 alerts per day</title>" in svg


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _css() -> str:
    return STYLE.read_text()


def _var(name: str) -> str:
    return re.search(rf"--{name}: (#[0-9a-f]{{6}})", _css()).group(1)


@pytest.mark.parametrize("band", ["P0", "P1", "P2", "P3", "P4"])
def test_priority_badges_meet_wcag_aa(band):
    bg = re.search(rf"\.band-{band} {{ background: (#[0-9a-f]{{6}}); }}", _css()).group(1)
    assert contrast(bg, "#ffffff") >= 4.5, (band, bg)


@pytest.mark.parametrize("name", ["risk", "norisk", "undecided", "muted", "accent", "fg"])
def test_text_colours_meet_wcag_aa_on_white_and_the_page(name):
    colour = _var(name)
    assert contrast(colour, "#ffffff") >= 4.5 and contrast(colour, _var("bg")) >= 4.5, name


def test_threshold_and_alert_colours_are_distinct():
    # Graphics need 3:1 against the chart and should differ from each other clearly.
    threshold, alert = _var("threshold"), _var("alert")
    assert contrast(threshold, "#ffffff") >= 3 and contrast(alert, "#ffffff") >= 3
    assert contrast(threshold, alert) >= 3


@pytest.mark.parametrize("target,expected", [
    ("/alerts?tab=risk", "/alerts?tab=risk"),
    ("/alerts/abc?back=%2Falerts", "/alerts/abc?back=%2Falerts"),
    ("/\t/evil.example", "D"), ("//evil.example", "D"), ("/\\evil", "D"), ("/%5cevil", "D"),
    ("/%2f%2fevil", "D"), ("https://evil.example", "D"), ("", "D"), (None, "D"),
    ("/a b", "D"), ("/%252F%252Fevil", "D")])
def test_safe_target(target, expected):
    assert safe_target(target, "D") == expected


@pytest.mark.parametrize("value,expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("plain", "plain"), (1546300800, 1546300800), (None, None)])
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_a_stored_alert_explanation_is_read_and_other_formats_refused():
    import json

    from webapp.explain import stored

    doc = {"format": 1, "unit": "logit", "intercept": -1.45, "writing": {
        "submission_id": "t3_abc", "p_text": 0.71, "logit": 0.895, "user_move": 0.41,
        "up": [{"term": "SRL: hopelessness", "feature": "__lex_srl_hopelessness", "count": 1,
                "logit": 0.53, "negated": False}],
        "down": [{"term": "suicidal", "feature": "neg:suicidal", "count": 1, "logit": -0.21,
                  "negated": True}]}}
    ex = stored(json.dumps(doc))
    assert ex.p_text == 0.71 and ex.intercept == -1.45
    assert ex.up[0].term == "SRL: hopelessness" and ex.down[0].negated
    assert stored(json.dumps({**doc, "format": 2})) is None
    assert stored("not json") is None and stored(None) is None
