#!/usr/bin/env python3
"""The side-by-side table of one hack/peer-bench.sh run, in Markdown; not part of the product.

  compare.py OPERATOR_JSON KYVERNO_JSONL

OPERATOR_JSON is what `hack/bench.sh --json` wrote; KYVERNO_JSONL the lines `measure.py` appended
during the same run (the last line of each scenario counts). Each ratio is Kyverno's figure over
the operator's: above 1 the operator is ahead.
"""

import json
import sys


def kib(value):
    """'123456 kB' (as /proc says it) in MiB."""
    return int(value.split()[0]) / 1024


def ratio(theirs, ours):
    if theirs is None or ours is None:
        return "n/a"
    if ours <= 0:
        return "n/a (operator: 0)"
    return f"{theirs / ours:.1f}x"


def latency(lat):
    if not lat:
        return "none measured"
    n = lat.get("samples", lat.get("n"))
    return f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms ({n} samples)"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours = json.load(open(sys.argv[1]))
    kyverno = {}
    for line in open(sys.argv[2]):
        record = json.loads(line)
        kyverno[record["scenario"]] = record

    rows = []
    reapply = kyverno.get("reapply", {})
    complete = reapply.get("all_complete")
    k_bulk = reapply.get("convergence_seconds")
    rows.append((
        f"bulk: policy applied to {ours['namespaces']:,} existing namespaces, until all complete",
        f"{k_bulk} s" + ("" if complete else f" (stopped: {reapply.get('complete')} complete)"),
        f"{ours['bulk_operator_s']:.1f} s",
        ratio(k_bulk, ours["bulk_operator_s"]) if complete else "did not converge",
    ))
    k_onboard = (kyverno.get("onboard") or {}).get("latency")
    rows.append((
        "onboarding: creation to every object in place",
        latency(k_onboard),
        latency(ours["onboarding"]),
        "p50 " + ratio(k_onboard and k_onboard["p50_ms"], ours["onboarding"]["p50_ms"])
        + ", p99 " + ratio(k_onboard and k_onboard["p99_ms"], ours["onboarding"]["p99_ms"]),
    ))
    rows.append((
        "gate open: creation to the first pod admitted",
        "no gate: pods are admitted before the default-deny exists",
        latency(ours.get("gate_open")),
        "",
    ))
    k_repair = (kyverno.get("repair") or {}).get("latency")
    o_repair = ours.get("repair_by_edit", {}).get("DeletePolicy")
    rows.append((
        "repair: a deleted default-deny NetworkPolicy back",
        latency(k_repair),
        latency(o_repair),
        "p50 " + ratio(k_repair and k_repair["p50_ms"], o_repair and o_repair["p50_ms"])
        + ", p99 " + ratio(k_repair and k_repair["p99_ms"], o_repair and o_repair["p99_ms"]),
    ))
    k_idle = kyverno.get("idle", {})
    o_total = sum(ours["idle_requests"].values())
    per_minute = lambda n, s: n * 60 / s if s else None  # noqa: E731
    k_rate = per_minute(k_idle.get("total", 0), k_idle.get("seconds"))
    o_rate = per_minute(o_total, ours["idle_seconds"])
    rows.append((
        "idle: API requests per minute (writes)",
        f"{k_rate:.1f} ({per_minute(k_idle.get('writes', 0), k_idle.get('seconds')):.1f})" if k_rate is not None else "n/a",
        f"{o_rate:.1f} ({per_minute(ours['idle_writes'], ours['idle_seconds']):.1f})",
        ratio(k_rate, o_rate),
    ))
    rss = kyverno.get("rss", {})
    if rss:
        k_now = sum(kib(rss[p]["VmRSS"]) for p in ("admission", "background"))
        k_peak = sum(kib(rss[p]["VmHWM"]) for p in ("admission", "background"))
        k_text = (f"{k_now:.0f} MiB at the end, peaks {kib(rss['admission']['VmHWM']):.0f} + "
                  f"{kib(rss['background']['VmHWM']):.0f} MiB (admission + background controller)")
    else:
        k_now = k_peak = None
        k_text = "n/a"
    rows.append((
        "memory: resident set",
        k_text,
        f"{ours['rss_steady_mib']:.1f} MiB at the end, peak {ours['rss_peak_mib']:.1f} MiB",
        "end " + ratio(k_now, ours["rss_steady_mib"]) + ", peak " + ratio(k_peak, ours["rss_peak_mib"]),
    ))

    print(f"| scenario ({ours['namespaces']:,} namespaces) | Kyverno | operator | Kyverno / operator |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
