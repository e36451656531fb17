"""Render a run directory's metrics.json as Markdown: ``python reports/render_run.py RUN_DIR > results.md``."""
import json
import sys
from pathlib import Path


def render(run: Path) -> str:
    m = json.loads((run / "metrics.json").read_text())
    env, r = m["environment"], m["ranking"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731  (null = undefined, e.g. constant estimates)
    rows = "\n".join(f"| {k} | {fmt(v['value'])} | [{fmt(v.get('ci_low'))}, {fmt(v.get('ci_high'))}] |"
                     for k, v in r.items() if isinstance(v, dict))
    t, e = m["train"], m["estimate"]
    return f"""# Results of `{run}` (generated from metrics.json)

- ground truth: `{m['ground_truth']['query']}` (seeds: {m['ground_truth']['seeds']}) from `{m['ground_truth']['source']}`
- estimator: {m['estimator']['name']}, BN policy `{m['estimator']['bn_policy']}`, sampler `{m['estimator']['sampler']['name']}`
- supernet: C={m['supernet']['C']}, N={m['supernet']['N']}, {m['supernet']['parameters']:,} parameters; inputs {m['split']['resolution']}x{m['split']['resolution']}
- training: {t['steps']} steps in {t['seconds']:.1f} s ({t.get('steps_per_second', 0):.1f} steps/s), final loss {fmt(t.get('final_loss'))}
- estimation: {e['n_archs']} architectures on {e['held_out_images']} held-out images in {e['seconds']:.1f} s
- split: {m['split']['kind']} (seed {m['split']['seed']}), {m['split']['n_train_used']} train / {m['split']['n_valid_used']} held-out images used
- environment: torch {env['torch']}, device {env['device']} ({env['device_name']}), {env['cpu_threads']} threads, git {env['git_revision']}

| metric | value | 95% CI |
|---|---|---|
{rows}
"""


if __name__ == "__main__":
    print(render(Path(sys.argv[1])), end="")
