"""A self-contained HTML report (no scripts, no external files) that a partner can open from a mail.

Why this layout: the question a reader brings is "what failed and why", so failures open
with their request and response excerpts, while passes and skips stay folded with their checks.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from gateway.conformance.model import CaseResult, Exchange, RunResult

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;opacity:.85}main{padding:18px 28px;max-width:1200px}
.totals{display:flex;gap:12px;margin:14px 0 20px}.total{background:#fff;border-radius:8px;padding:10px 18px;
box-shadow:0 1px 2px #0002;min-width:90px}.total b{display:block;font-size:24px}
.pass{color:#17803d}.fail{color:#c0262d}.skip{color:#8a6d00}
section{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;margin-bottom:18px;padding:6px 16px 12px}
section h2{font-size:16px;margin:10px 0 2px}.about{margin:0 0 8px;color:#5b6475;font-size:13px}
section h2 small{font-weight:400;color:#5b6475}
details{border-top:1px solid #e6e8ec;padding:6px 0}summary{cursor:pointer;display:flex;gap:10px;align-items:baseline}
summary .badge{font-weight:700;width:60px;font-size:12px;white-space:nowrap;flex:none}summary code{font-size:13px}
summary .title{color:#5b6475;flex:1}summary .time{color:#8b93a3;font-size:12px}
ul.checks{margin:6px 0 6px 70px;padding:0;list-style:none}ul.checks li{margin:2px 0}
ul.checks .detail{color:#5b6475}.reason{margin:4px 0 4px 70px;color:#8a6d00}
.exchange{margin:8px 0 8px 70px}.exchange h4{margin:6px 0 2px;font-size:12px;color:#5b6475}
pre{background:#f0f2f5;border-radius:6px;padding:8px;overflow:auto;max-height:320px;white-space:pre-wrap;
word-break:break-all;font-size:12px;margin:0}
"""

_ICON = {"pass": "✔ PASS", "fail": "✘ FAIL", "skip": "○ SKIP"}


def _exchange(exchange: Exchange) -> str:
    request_head = "\n".join(f"{k}: {v}" for k, v in exchange.request_headers.items())
    response_head = "\n".join(f"{k}: {v}" for k, v in exchange.response_headers.items())
    status = exchange.status if exchange.status is not None else exchange.error
    return (f'<div class="exchange"><h4>Request</h4><pre>{escape(exchange.method)} {escape(exchange.url)}\n'
            f"{escape(request_head)}\n\n{escape(exchange.request_body)}</pre>"
            f"<h4>Response</h4><pre>{escape(str(status))}\n{escape(response_head)}\n\n"
            f"{escape(exchange.response_body)}</pre></div>")


def _case(case: CaseResult) -> str:
    outcome = case.outcome
    checks = "".join(f'<li class="{c.outcome}">{_ICON[c.outcome][0]} {escape(c.name)}'
                     + (f' <span class="detail">— {escape(c.detail)}</span>' if c.detail else "") + "</li>"
                     for c in case.checks)
    reason = f'<p class="reason">Skipped: {escape(case.skip_reason)}</p>' if case.skip_reason else ""
    exchanges = "".join(_exchange(e) for e in case.exchanges) if outcome == "fail" else ""
    return (f'<details{" open" if outcome == "fail" else ""}><summary><span class="badge {outcome}">'
            f"{_ICON[outcome]}</span><code>{escape(case.id)}</code><span class=title>{escape(case.title)}</span>"
            f'<span class="time">{case.seconds * 1000:.0f} ms</span></summary>{reason}'
            f'<ul class="checks">{checks}</ul>{exchanges}</details>')


def _suite(name: str, description: str, cases: list[CaseResult]) -> str:
    counts = {o: sum(c.outcome == o for c in cases) for o in ("pass", "fail", "skip")}
    ordered = sorted(cases, key=lambda c: {"fail": 0, "pass": 1, "skip": 2}[c.outcome])
    summary = ", ".join(f'<span class="{o}">{n} {o}</span>' for o, n in counts.items())
    about = f'<p class="about">{escape(description)}</p>' if description else ""
    return f"<section><h2>{escape(name)} <small>{summary}</small></h2>{about}{''.join(map(_case, ordered))}</section>"


def render(result: RunResult) -> str:
    totals = "".join(f'<div class="total"><b class="{o}">{result.count(o)}</b>{label}</div>'
                     for o, label in (("pass", "passed"), ("fail", "failed"), ("skip", "skipped")))
    checks = sum(len(c.checks) for c in result.cases)
    verdict = "conforms" if result.ok else "does not conform"
    suites = "".join(_suite(name, result.descriptions.get(name, ""), cases)
                     for name, cases in result.by_suite().items())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>FHIR conformance — '
            f"{escape(result.base)}</title><style>{_STYLE}</style></head><body><header>"
            f"<h1>FHIR conformance report: {escape(result.base)} {verdict}</h1>"
            f"<p>{escape(result.started)} · {len(result.cases)} cases · {checks} checks · "
            f"{result.seconds:.1f} s</p></header><main><div class=totals>{totals}</div>{suites}</main></body></html>")


def write(result: RunResult, path: Path) -> None:
    path.write_text(render(result), encoding="utf-8")
