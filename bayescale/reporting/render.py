"""Rendering a report to self-contained HTML or to Markdown (Jinja2 templates).

Both formats come from the same :class:`Report` content, so they say the same
thing. Every user string (family names, titles, table cells) is escaped: the
HTML template autoescapes, the Markdown one escapes HTML and table syntax.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

import pandas as pd
from jinja2 import Environment
from markupsafe import Markup, escape

_SLUG_MAX = 40


@dataclass
class Table:
    """A preformatted table (string cells), a caption and an optional note."""

    frame: pd.DataFrame
    caption: str = ""
    note: str = ""


@dataclass
class Figure:
    """A rendered figure (PNG bytes) with a file stem and a caption."""

    name: str
    png: bytes
    caption: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    items: list = field(default_factory=list)
    collapsed: bool = False


@dataclass
class Report:
    """Everything a report shows, in order: answer first, evidence below."""

    title: str
    subtitle: str
    headline: list  # sentences
    status: object  # summaries.Status
    main_figure: Figure | None
    answer: list  # items right under the headline (the predictions table)
    sections: list  # Section


def slug(text: str, taken: set | None = None) -> str:
    """A short file-safe name; long or clashing names get a hash suffix."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "x"
    if len(base) > _SLUG_MAX:
        digest = hashlib.sha1(str(text).encode()).hexdigest()[:8]
        base = f"{base[:_SLUG_MAX]}-{digest}"
    if taken is not None:
        name, i = base, 2
        while name in taken:
            name = f"{base}-{i}"
            i += 1
        taken.add(name)
        return name
    return base


def _inline_html(text) -> Markup:
    """Escape, then render `code` spans."""
    parts = str(text).split("`")
    return Markup("").join(
        Markup("<code>{}</code>").format(p) if i % 2 else escape(p) for i, p in enumerate(parts)
    )


_NUM = r"[-+]?[0-9.,]+(?:e[-+]?[0-9]+)?%?"


def _is_num(s) -> bool:
    """Numbers, intervals and "median [lo, hi]" cells: kept on one line."""
    pattern = rf"{_NUM}|–|(?:{_NUM} )?\[{_NUM}, {_NUM}\]|\({_NUM}(?:, {_NUM})*\)"
    return bool(re.fullmatch(pattern, str(s).strip()))


def _md(text) -> str:
    """Markdown-safe text: no raw HTML, no line breaks."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"\s*[\r\n]+\s*", " ", s)


def _md_cell(text) -> str:
    return _md(text).replace("|", "\\|")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:1em 1.5em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.45em;margin:.2em 0}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.4em;font-size:1.2em}
.meta{color:#555;font-size:.85em;margin:.1em 0 .6em 0}
.headline{font-size:1.08em;background:#f4f8fb;border-left:5px solid #0072B2;
 padding:.6em 1em;margin:.6em 0}
.headline p{margin:.35em 0}
.checks{font-size:.85em;margin:.3em 0 .8em 0;color:#333}
.checks.warn{border-left:4px solid #D55E00;padding:.2em .8em;background:#fdf6ef}
.checks ul{margin:.1em 0;padding-left:1.2em}
.tag{display:inline-block;min-width:3em;text-align:center;font-weight:600;border-radius:3px;
 padding:0 .3em;margin-right:.4em;font-size:.85em}
.tag.pass{background:#009E73;color:#fff}.tag.warn{background:#D55E00;color:#fff}
.tag.na{background:#999;color:#fff}
table{border-collapse:collapse;margin:.4em 0 1em 0;font-size:.86em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.22em .5em;text-align:left;vertical-align:top}
th{background:#f1f3f5}tr:nth-child(even) td{background:#fafafa}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.note{color:#444;font-size:.85em;margin-top:-.7em;margin-bottom:1em}
figure{margin:.6em 0 1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.88em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600;font-size:1.05em}
.scroll{overflow-x:auto}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ r.title }}</title><style>{{ css }}</style></head><body>
<h1>{{ r.title }}</h1>
<p class="meta">{{ r.subtitle | inline }}</p>
<section class="headline" id="headline">
{% for s in r.headline %}<p>{{ s | inline }}</p>
{% endfor %}</section>
{% if r.main_figure and r.main_figure.png %}
<figure id="fig-{{ r.main_figure.name }}"><img alt="{{ r.main_figure.caption }}"
 src="data:image/png;base64,{{ r.main_figure.png | b64 }}">
<figcaption>{{ r.main_figure.caption | inline }}</figcaption></figure>
{% endif %}
{% for item in r.answer %}{{ render_item(item) }}{% endfor %}
<div class="checks {{ r.status.status }}" id="status" data-status="{{ r.status.status }}">
<b>Checks: {{ "all passed" if r.status.status == "pass" else "read before trusting the intervals" }}</b>
<ul>{% for name, s, text in r.status.checks %}
<li><span class="tag {{ 'na' if s == 'n/a' else s }}">{{ s | upper }}</span><b>{{ name }}</b>:
 {{ text | inline }}</li>{% endfor %}</ul></div>
{% for sec in r.sections %}
{% if sec.collapsed %}<details id="{{ sec.anchor }}"><summary>{{ sec.title }}</summary>
{% else %}<section id="{{ sec.anchor }}"><h2>{{ sec.title }}</h2>{% endif %}
{% for item in sec.items %}{{ render_item(item) }}{% endfor %}
{% if sec.collapsed %}</details>{% else %}</section>{% endif %}
{% endfor %}
</body></html>
"""

_HTML_ITEM = """{% if kind == "table" %}<div class="scroll"><table>
<caption>{{ item.caption | inline }}</caption>
<thead><tr>{% for c in item.frame.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in item.frame.itertuples(index=False) %}<tr>{% for v in row %}{% if v | isnum %}
<td class="num">{{ v }}</td>{% else %}<td>{{ v | inline }}</td>{% endif %}{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{% if item.note %}<p class="note">{{ item.note | inline }}</p>{% endif %}
{% elif kind == "figure" %}{% if item.png %}
<figure id="fig-{{ item.name }}"><img alt="{{ item.caption }}"
 src="data:image/png;base64,{{ item.png | b64 }}">
<figcaption>{{ item.caption | inline }}</figcaption></figure>
{% else %}<p class="note">{{ item.caption | inline }}</p>{% endif %}
{% else %}<p>{{ item | inline }}</p>{% endif %}
"""

_MD = """# {{ r.title | md }}

{{ r.subtitle | md }}

{% for s in r.headline %}> {{ s | md }}
>
{% endfor %}
{% if r.main_figure and r.main_figure.png %}![{{ r.main_figure.caption | md }}]({{ files }}/{{ r.main_figure.name }}.png)

{{ r.main_figure.caption | md }}
{% endif %}
{% for item in r.answer %}{{ render_item(item) }}
{% endfor %}
**Checks: {{ "all passed" if r.status.status == "pass" else "read before trusting the intervals" }}**

{% for name, s, text in r.status.checks %}- **{{ s | upper }}** {{ name | md }}: {{ text | md }}
{% endfor %}
{% for sec in r.sections %}
## {{ sec.title | md }}

{% for item in sec.items %}{{ render_item(item) }}
{% endfor %}{% endfor %}
"""

_MD_ITEM = """{% if kind == "table" %}**{{ item.caption | md }}**

| {% for c in item.frame.columns %}{{ c | mdcell }} | {% endfor %}
| {% for c in item.frame.columns %}--- | {% endfor %}
{% for row in item.frame.itertuples(index=False) %}| {% for v in row %}{{ v | mdcell }} | {% endfor %}
{% endfor %}{% if item.note %}
_{{ item.note | md }}_
{% endif %}{% elif kind == "figure" %}{% if item.png %}![{{ item.caption | md }}]({{ files }}/{{ item.name }}.png)

{{ item.caption | md }}
{% else %}_{{ item.caption | md }}_
{% endif %}{% else %}{{ item | md }}
{% endif %}"""


def _kind(item) -> str:
    return "table" if isinstance(item, Table) else "figure" if isinstance(item, Figure) else "text"


def _environment(autoescape: bool) -> Environment:
    env = Environment(autoescape=autoescape, trim_blocks=False, lstrip_blocks=False)
    env.filters.update(inline=_inline_html, b64=_b64, isnum=_is_num, md=_md, mdcell=_md_cell)
    return env


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document (figures embedded)."""
    env = _environment(True)
    item_t = env.from_string(_HTML_ITEM)

    def render_item(item):
        return Markup(item_t.render(item=item, kind=_kind(item)))

    return env.from_string(_HTML).render(r=report, css=Markup(_CSS), render_item=render_item)


def render_markdown(report: Report, files: str) -> str:
    """The report as Markdown; figures are referenced as ``files/<name>.png``."""
    env = _environment(False)
    item_t = env.from_string(_MD_ITEM)

    def render_item(item):
        return item_t.render(item=item, kind=_kind(item), files=files)

    text = env.from_string(_MD).render(r=report, files=files, render_item=render_item)
    return re.sub(r"\n{3,}", "\n\n", text)


def figures_of(report: Report) -> list[Figure]:
    """Every figure of the report with a picture, main figure first."""
    items = [report.main_figure] + report.answer
    for sec in report.sections:
        items += sec.items
    return [f for f in items if isinstance(f, Figure) and f.png]
