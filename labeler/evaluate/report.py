"""The evaluation report: metrics.json, PNG plots, report.md and a self-contained report.html.

Both documents are rendered from one Jinja2 template of the content (templates/body.j2) through a set of
block macros per format (_md.j2, _html.j2). Every value a template prints is escaped for its format by
labeler.evaluate.escape (the environment's `finalize`), the template's own text is written as is; so a label
name or an item text never becomes markup in either file. The PNGs are inlined in report.html as base64.
Everything is read from the metrics dict of labeler.evaluate.measure.build_metrics, so a report can be
rebuilt from metrics.json alone.

    formatting   numbers as the report writes them        prose          the summary sentences
    escape       text made safe for Markdown, HTML, tty   report_plots   the PNGs
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from labeler.evaluate import annotators, escape, report_plots
from labeler.evaluate.formatting import ci, est, money, num, ok, pct, short
from labeler.evaluate.prose import band_items, calibration_direction, summary_sentences

__all__ = ["calibration_direction", "render", "summary_sentences", "write_report"]

TEMPLATES = Path(__file__).with_name("templates")


def _examples(texts: Sequence[str]) -> str:
    return " ‖ ".join(short(t) for t in texts)


@cache
def _environment(fmt: str) -> Any:
    import jinja2
    from markupsafe import Markup

    escaper: Callable[[object], str] = {"md": escape.markdown, "html": escape.html}[fmt]

    def finalize(value: object) -> object:
        if isinstance(value, Markup):  # the output of a block macro: already escaped
            return value
        return Markup(escaper("" if value is None else value))

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # so that macro output is Markup and is not escaped twice
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        est=est,
        ci=ci,
        pct=pct,
        num=num,
        money=money,
        ok=ok,
        thousands=lambda x: f"{x:,}",
        examples=_examples,
        band_items=band_items,
    )
    return env


def render(
    m: Mapping[str, Any], images: Mapping[str, str], fmt: str, image_data: Mapping[str, bytes] | None = None
) -> str:
    """report.md (fmt "md") or report.html (fmt "html") for the metrics dict m. `images` maps a plot's role
    (confusion, overprediction, reliability, budget) to its file name, for the plots that were drawn;
    `image_data` maps a file name to its PNG bytes (inlined in HTML)."""
    reviewers = ", ".join(f"{r} ({n})" for r, n in m["data"]["reviewers"].items()) or "none"
    text = (
        _environment(fmt)
        .get_template(f"report.{fmt}.j2")
        .render(
            m=m,
            images=dict(images),
            image_data={k: base64.b64encode(v).decode("ascii") for k, v in (image_data or {}).items()},
            summary_text=" ".join(m.get("summary") or summary_sentences(m)),
            lv=pct(m["settings"]["level"], 0),
            reviewers=reviewers,
        )
    )
    text = annotators.insert_section(text, m, fmt)  # the annotators section (labeler.evaluate.annotators)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def write_report(metrics: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, the PNGs, report.md and report.html to out_dir. Returns the written paths."""
    return write_files(metrics, out_dir, summary=summary_sentences, draw=report_plots.draw_all, render=render)


def write_files(
    metrics: Mapping[str, Any],
    out_dir: Path,
    *,
    summary: Callable[[Mapping[str, Any]], list[str]],
    draw: Callable[[Mapping[str, Any], Path], dict[str, str]],
    render: Callable[..., str],
) -> dict[str, Path]:
    """The files of a report, whatever its task type: metrics.json (with its summary sentences), the plots
    `draw` makes, and report.md / report.html from `render` (the HTML with the plots inlined)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = dict(metrics)
    m["summary"] = summary(m)
    (out_dir / "metrics.json").write_text(
        json.dumps(m, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    images = draw(m, out_dir)
    (out_dir / "report.md").write_text(render(m, images, "md"), encoding="utf-8")
    data = {name: (out_dir / name).read_bytes() for name in images.values()}
    (out_dir / "report.html").write_text(render(m, images, "html", data), encoding="utf-8")
    paths = {k: out_dir / v for k, v in images.items()}
    paths.update({k: out_dir / k for k in ("metrics.json", "report.md", "report.html")})
    return paths
