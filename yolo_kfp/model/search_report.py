"""A search's trials, for a person to compare: a Markdown table and a self-contained HTML page.

A trial record (one per trial of a search) is ``{"trial": i, "settings": {name: value}, "epochs": n,
"val": {"map50", "map50_95", "precision", "recall"}, "mlflow_run_id": str, "seconds": float}``; the
winner is one of them. The Markdown goes to the Data Science Pipelines UI's Markdown viewer, the HTML to
its HTML viewer, a sandboxed iframe: the page makes no network request at all (no script, no font, no
link; the pictures are inline SVG). Setting values come from a user's ``search_space`` and records from a
step's output, so every text in either document is escaped.
"""

import html
import json
import math

from yolo_kfp.infra.markdown_text import inert

METRIC_COLUMNS = (("map50", "val mAP50"), ("map50_95", "val mAP50-95"), ("precision", "precision"),
                  ("recall", "recall"))
TAG_PREFIX = "search."  # the winner's settings, where a model's version records them
SCORE = "map50_95"  # what a search ranks its trials by (validation split)
WINNER_MARK = "★"
# one SVG panel per searched setting
PANEL_WIDTH, PANEL_HEIGHT = 300, 210
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 16, 26, 42
LOG_SPAN = 10  # numeric values all above 0 spanning at least this factor are drawn on a log axis
STYLE = """
body { font-family: sans-serif; margin: 1em; color: #222; }
.panels { display: flex; flex-wrap: wrap; gap: 12px; }
svg { background: #fafafa; border: 1px solid #ddd; }
svg text { font-size: 11px; fill: #333; }
.trial { fill: #4a78b5; fill-opacity: 0.75; }
.winner { fill: #d9480f; stroke: #222; stroke-width: 1.5; }
.axis { stroke: #888; stroke-width: 1; }
.grid { stroke: #e3e3e3; stroke-width: 1; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
tr.winner-row td { background: #fff1e6; font-weight: bold; }
"""


def setting_names(records: list[dict]) -> list[str]:
    """The searched settings' names, in the order they first appear."""
    return list(dict.fromkeys(name for record in records for name in record["settings"]))


def setting_text(value) -> str:
    """A setting's value as one line of text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def search_tags(settings: dict) -> dict[str, str]:
    """A winner's settings as tags of a model's version or params of a run: ``search.<name>`` = text."""
    return {f"{TAG_PREFIX}{name}": setting_text(value) for name, value in settings.items()}


def search_record(search: dict, source: str = "search.json") -> dict:
    """What a published model records of the search that chose its settings (``search.json``: space,
    trials, winner): the space, the winner's trial, settings and validation scores, and the trial count."""
    winner = search.get("winner") if isinstance(search, dict) else None
    if not (isinstance(winner, dict) and isinstance(winner.get("trial"), int)
            and isinstance(winner.get("settings"), dict) and isinstance(winner.get("val"), dict)
            and isinstance(search.get("space"), dict) and isinstance(search.get("trials"), list)):
        raise ValueError(f"{source} is not a search's record (space, trials, winner with trial, settings, val): "
                         "it was not written by the train step; run the train step again")
    return {"space": search["space"], "winner": {key: winner[key] for key in ("trial", "settings", "val")},
            "trials": len(search["trials"])}


def _number(value: float) -> str:
    return f"{value:.3f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _is_winner(record: dict, winner: dict) -> bool:
    return record["trial"] == winner["trial"]


def _table_rows(records: list[dict], winner: dict) -> tuple[list[str], list[list[str]]]:
    """The trials table's header and cells (plain text, not yet escaped), in trial order."""
    names = setting_names(records)
    header = ["trial", *names, "epochs", *(title for _, title in METRIC_COLUMNS), "time"]
    rows = []
    for record in sorted(records, key=lambda r: r["trial"]):
        trial = f"{record['trial']} {WINNER_MARK} winner" if _is_winner(record, winner) else str(record["trial"])
        settings = [setting_text(record["settings"][n]) if n in record["settings"] else "" for n in names]
        metrics = [_number(record["val"][key]) for key, _ in METRIC_COLUMNS]
        rows.append([trial, *settings, str(record["epochs"]), *metrics, _duration(record["seconds"])])
    return header, rows


def _winner_line(winner: dict) -> str:
    settings = ", ".join(f"{name}={setting_text(value)}" for name, value in winner["settings"].items())
    return (f"Winner: trial {winner['trial']} (val mAP50-95 {_number(winner['val'][SCORE])})"
            + (f": {settings}" if settings else ""))


def trials_markdown(records: list[dict], winner: dict) -> str:
    """A table of the trials, one row each in trial order, the winner's marked; validation-split scores."""
    header, rows = _table_rows(records, winner)
    lines = [f"## Search: {len(records)} trials, scored on the validation split", "",
             inert(_winner_line(winner)), "",
             "| " + " | ".join(inert(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    for row in rows:
        cells = [inert(c) for c in row]
        if row[0].endswith("winner"):
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _axis(values: list) -> tuple[str, list]:
    """How a setting's values are laid out: "log" or "linear" for numbers, "columns" otherwise."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if min(values) > 0 and max(values) >= LOG_SPAN * min(values):
            return "log", sorted(set(values))
        return "linear", sorted(set(values))
    return "columns", sorted(set(setting_text(v) for v in values))


def _score_range(scores: list[float]) -> tuple[float, float]:
    """The vertical axis: the scores' range widened to tenths (at least one tenth), within 0..1."""
    low = max(0.0, math.floor(min(scores) * 10) / 10)
    high = min(1.0, math.ceil(max(scores) * 10) / 10)
    if high - low < 0.1:
        low, high = (high - 0.1, high) if high >= 0.1 else (0.0, 0.1)
    return low, high


def _x_positions(kind: str, levels: list, values: list) -> list[float]:
    """Each value's horizontal position in 0..1."""
    if kind == "columns":
        return [(levels.index(setting_text(v)) + 0.5) / len(levels) for v in values]
    scale = math.log10 if kind == "log" else float
    low, high = scale(levels[0]), scale(levels[-1])
    return [0.5 if high == low else 0.05 + 0.9 * (scale(v) - low) / (high - low) for v in values]


def _spread(positions: list[float], width: float) -> list[float]:
    """Points at the same place side by side, a few pixels apart, so none hides another."""
    seen: dict[float, list[int]] = {}
    for index, x in enumerate(positions):
        seen.setdefault(round(x, 6), []).append(index)
    spread = list(positions)
    for indices in seen.values():
        for k, index in enumerate(indices):
            spread[index] = positions[index] + (k - (len(indices) - 1) / 2) * 7 / width
    return spread


def _panel(name: str, records: list[dict], winner: dict) -> str:
    """One SVG panel: each trial's validation mAP50-95 against its value of ``name``."""
    present = [r for r in records if name in r["settings"]]
    values = [r["settings"][name] for r in present]
    kind, levels = _axis(values)
    plot_w = PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    low, high = _score_range([r["val"][SCORE] for r in present])

    def x(fraction: float) -> float:
        return MARGIN_LEFT + fraction * plot_w

    def y(score: float) -> float:
        return MARGIN_TOP + (high - score) / (high - low) * plot_h

    title = f"{name} ({kind} axis)" if kind != "columns" else name
    parts = [f'<svg width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" role="img" '
             f'aria-label="{html.escape(f"validation mAP50-95 against {name}")}">',
             f'<text x="{PANEL_WIDTH / 2:.1f}" y="16" text-anchor="middle">{html.escape(title)}</text>']
    for tick in (low, (low + high) / 2, high):
        parts.append(f'<line class="grid" x1="{x(0):.1f}" x2="{x(1):.1f}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    parts.append(f'<line class="axis" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{y(high):.1f}" y2="{y(low):.1f}"/>')
    parts.append(f'<line class="axis" x1="{x(0):.1f}" x2="{x(1):.1f}" y1="{y(low):.1f}" y2="{y(low):.1f}"/>')
    shown = levels if len(levels) <= 6 else [levels[0], levels[len(levels) // 2], levels[-1]]
    for level, position in zip(shown, _x_positions(kind, levels, shown), strict=True):
        label = level if kind == "columns" else setting_text(level)
        parts.append(f'<text x="{x(position):.1f}" y="{y(low) + 15:.1f}" text-anchor="middle">'
                     f'{html.escape(label[:14])}</text>')
    parts.append(f'<text x="{x(0.5):.1f}" y="{PANEL_HEIGHT - 6}" text-anchor="middle">{html.escape(name)}</text>')
    positions = _spread(_x_positions(kind, levels, values), plot_w)
    # the winner last, so that it is drawn on top
    for record, position in sorted(zip(present, positions, strict=True), key=lambda pair: _is_winner(pair[0], winner)):
        won = _is_winner(record, winner)
        tip = (f"trial {record['trial']}{' (winner)' if won else ''}: {name}={setting_text(record['settings'][name])},"
               f" val mAP50-95 {_number(record['val'][SCORE])}")
        parts.append(f'<circle class="{"winner" if won else "trial"}" cx="{x(position):.1f}" '
                     f'cy="{y(record["val"][SCORE]):.1f}" r="{7 if won else 4.5}"><title>{html.escape(tip)}</title>'
                     f'</circle>')
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(records: list[dict], winner: dict) -> str:
    header, rows = _table_rows(records, winner)
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        css = ' class="winner-row"' if row[0].endswith("winner") else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def trials_html(records: list[dict], winner: dict) -> str:
    """A page with one picture per searched setting (each trial's validation mAP50-95 against its value,
    the winner in orange and larger) and the trials table. Well-formed XML as well as HTML."""
    names = setting_names(records)
    panels = [_panel(name, records, winner) for name in names]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8"/>',
        f"<title>Search: {len(records)} trials</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h2>Search: {len(records)} trials, scored on the validation split</h2>",
        f"<p>{html.escape(_winner_line(winner))} <span style=\"color:#d9480f\">{WINNER_MARK}</span></p>",
        '<div class="panels">', *panels, "</div>", _html_table(records, winner), "</body>", "</html>", ""])
