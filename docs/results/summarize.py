#!/usr/bin/env python3
"""summarize.py: the RESULTS.md tables from decouple's results.json files.

    python3 docs/results/summarize.py RUN_DIR [RUN_DIR ...]

One run: its table (many / medium / few / all / macro / tail-half / top-5 per head).
Several runs (seeds): mean ± sample std over the runs, per head and column, in Markdown.
"""
import json
import statistics
import sys

COLS = [("many", "many"), ("medium", "medium"), ("few", "few"), ("top1", "all"), ("macro", "macro"),
        ("tail_half_macro", "tail-half"), ("top5", "top-5")]
NAMES = {"joint": "joint", "ncm": "NCM", "tau_norm": "τ-norm", "logit_adj": "logit adjustment", "crt": "cRT",
         "lws": "LWS"}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [json.load(open(d.rstrip("/") + "/results.json")) for d in sys.argv[1:]]
    seeds = [r.get("seed") for r in runs]
    print(f"runs: {len(runs)}, seeds {seeds}, stage-1 seconds "
          f"{[round(r.get('stage1_seconds', 0)) for r in runs]}")
    print("| head | " + " | ".join(c for _, c in COLS) + " |")
    print("|---" * (len(COLS) + 1) + "|")
    for head in runs[0]["heads"]:
        cells = []
        for key, _ in COLS:
            vals = [r["heads"][head]["test"].get(key) for r in runs]
            if any(v is None for v in vals):
                cells.append("–")
            elif len(vals) == 1:
                cells.append(f"{100 * vals[0]:.2f}")
            else:
                cells.append(f"{100 * statistics.mean(vals):.2f} ± {100 * statistics.stdev(vals):.2f}")
        taus = ""
        if head in ("tau_norm", "logit_adj"):
            sweep = "tau_norm_sweep" if head == "tau_norm" else "logit_adj_sweep"
            chosen = [r.get(sweep, {}).get("chosen_tau") for r in runs]
            if all(c is not None for c in chosen):
                taus = " (τ " + ", ".join(f"{c:g}" for c in chosen) + ")"
        print(f"| {NAMES.get(head, head)}{taus} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
