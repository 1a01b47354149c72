"""The bridge study: biologically oriented attention mechanisms against softmax (writes docs/bridge.md + PNGs).

    python benchmarks/bridge.py            # full study (a few minutes on 2 CPU cores)
    python benchmarks/bridge.py --quick    # small smoke run, writes to /tmp/bridge-quick instead of docs/

Every number in docs/bridge.md is printed by this script in the same run (the document is generated from the
printed tables). The last line printed is the race's fitted convergence exponent (expected -0.5).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bridge_study as B
from attention import mechanism as resolve

FULL = {
    "sizes": (8, 64, 512), "count": {8: 256, 64: 128, 512: 32}, "d_v": 32,
    "race_k": (16, 64, 256, 1024, 4096), "rate_s": (1, 2, 5, 10, 20, 50, 100),
    "osc_s": (5, 10, 20, 50, 100, 200, 500, 1000), "osc_eps": (0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4),
    "betas": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0), "beta_n": 64,
}
QUICK = {
    "sizes": (8, 64), "count": {8: 32, 64: 16}, "d_v": 8,
    "race_k": (16, 64, 256), "rate_s": (1, 5, 20), "osc_s": (10, 50, 200), "osc_eps": (0.1, 1e-3),
    "betas": (1.0, 8.0, 32.0), "beta_n": 8,
}
DEFAULTS = {"race": {"cycles": 256}, "oscillator": {"steps": 200, "offset": 1e-4}, "rate": {"steps": 50}}


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.2e}"
    return f"{x:.4g}"


class Report:
    """Collects the printed lines; the document is built from the same strings."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, *parts: str) -> None:
        line = " ".join(parts)
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: list[str], rows: list[list[str]]) -> list[str]:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        for line in out:
            self(line)
        self("")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small smoke run; writes to --out (default /tmp/bridge-quick)")
    ap.add_argument("--out", default=None, help="folder for bridge.md and the PNGs (default docs/)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    out = Path(args.out) if args.out else (Path("/tmp/bridge-quick") if args.quick else Path(__file__).resolve().parents[1] / "docs")
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(20260501)
    say = Report()
    t_start = time.perf_counter()
    probs = {n: B.problems(jax.random.fold_in(key, n), cfg["count"][n], n, cfg["d_v"]) for n in cfg["sizes"]}
    say(f"# machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, backend {jax.default_backend()}")
    say(f"# problems: scores ~ N(0,1), values ~ N(0,1) (d_v = {cfg['d_v']}); problems per size {cfg['count']}")
    say("")
    doc: dict[str, list[str]] = {}

    # ------------------------------------------------------------------------------------------------ race
    say("## race: TV and output error vs K (beta = 1)")
    race, rows, slopes, all_k, deviation = {}, [], {}, {}, 0.0
    for n in cfg["sizes"]:
        race[n] = B.sweep("race", "cycles", cfg["race_k"], probs[n], jax.random.fold_in(key, 100 + n))
        p = jax.nn.softmax(probs[n].scores)
        for m in race[n]:
            expected = float(jnp.mean(B.race_expected_tv(p, m.options["cycles"])))
            if m.options["cycles"] >= 256:
                deviation = max(deviation, abs(m.tv / expected - 1.0))
            rows.append([str(n), str(m.options["cycles"]), fmt(m.tv), fmt(m.tv_se), fmt(expected), fmt(m.err), fmt(m.us_per_call)])
        asym = [m for m in race[n] if m.options["cycles"] >= 256]
        asym = asym if len(asym) >= 2 else race[n]  # (the --quick grid)
        slopes[n] = B.fit_power_law([m.options["cycles"] for m in asym], [m.tv for m in asym])[0]
        all_k[n] = B.fit_power_law([m.options["cycles"] for m in race[n]], [m.tv for m in race[n]])[0]
    doc["race"] = say.table(["n", "K", "TV", "± s.e.", "predicted TV", "output rel. error", "µs / call"], rows)
    ks = cfg["race_k"]
    halving = {n: race[n][ks.index(4096)].tv / race[n][ks.index(1024)].tv for n in cfg["sizes"]} if 4096 in ks else {}
    rows = [[str(n), f"{slopes[n]:.3f}", f"{all_k[n]:.3f}", f"{halving[n]:.3f}" if halving else "–"] for n in cfg["sizes"]]
    doc["race_fit"] = say.table(
        ["n", "fitted exponent b, K ≥ 256 (TV ∝ K^b)", "fitted over all K", "TV(K=4096) / TV(K=1024)"], rows)

    # ------------------------------------------------------------------------------------------------ rate
    say("## rate competition: TV vs S (beta = 1, leak 0.2, inhibition 0.5)")
    rate, rows, factors = {}, [], {}
    for n in cfg["sizes"]:
        rate[n] = B.sweep("rate", "steps", cfg["rate_s"], probs[n], jax.random.fold_in(key, 200 + n))
        for m in rate[n]:
            rows.append([str(n), str(m.options["steps"]), fmt(m.tv), fmt(m.err), fmt(m.us_per_call)])
        fit = [(m.options["steps"], m.tv) for m in rate[n] if m.options["steps"] >= 5 and m.tv > 1e-6]
        factors[n] = B.fit_geometric(*zip(*fit))[0] if len(fit) >= 2 else float("nan")
    doc["rate"] = say.table(["n", "S", "TV", "output rel. error", "µs / call"], rows)
    doc["rate_fit"] = say.table(
        ["n", "fitted factor r per step (TV ∝ r^S, S ≥ 5)", "predicted 1 - min(leak, inhibition)"],
        [[str(n), f"{factors[n]:.3f}", "0.8"] for n in cfg["sizes"]],
    )

    # ------------------------------------------------------------------------------------------ oscillator
    say("## oscillator: TV vs S (beta = 1, offset 1e-4)")
    osc, rows, osc_slopes = {}, [], {}
    for n in cfg["sizes"]:
        osc[n] = B.sweep("oscillator", "steps", cfg["osc_s"], probs[n], jax.random.fold_in(key, 300 + n), base={"offset": 1e-4})
        for m in osc[n]:
            rows.append([str(n), str(m.options["steps"]), fmt(m.tv), fmt(m.tv_limit), fmt(m.tv_floor), fmt(m.err), fmt(m.us_per_call)])
        osc_slopes[n] = B.fit_power_law([m.options["steps"] for m in osc[n]], [m.tv_limit for m in osc[n]])[0]
    doc["osc_s"] = say.table(["n", "S", "TV to softmax", "TV to its S→∞ limit", "limit's TV to softmax", "output rel. error", "µs / call"], rows)
    doc["osc_s_fit"] = say.table(["n", "fitted exponent (TV to limit ∝ S^b)"], [[str(n), f"{osc_slopes[n]:.3f}"] for n in cfg["sizes"]])

    say("## oscillator: TV vs initial offset from antiphase (beta = 2, S = 1000)")
    n_eps = cfg["beta_n"]
    eps_rows = B.sweep("oscillator", "offset", cfg["osc_eps"], probs[n_eps], jax.random.fold_in(key, 400), beta=2.0, base={"steps": 1000})
    doc["osc_eps"] = say.table(
        ["n", "offset ε", "TV to softmax", "limit's TV to softmax", "TV to its limit (Euler)"],
        [[str(n_eps), fmt(m.options["offset"]), fmt(m.tv), fmt(m.tv_floor), fmt(m.tv_limit)] for m in eps_rows],
    )

    # --------------------------------------------------------------------------------------------- beta
    say(f"## all mechanisms vs beta (n = {cfg['beta_n']}; race K = 256, oscillator S = 200 offset 1e-4, rate S = 50)")
    nb = cfg["beta_n"]
    by_beta = {name: B.sweep(name, "beta", cfg["betas"], probs[nb], jax.random.fold_in(key, 500 + i), base=DEFAULTS[name])
               for i, name in enumerate(("race", "oscillator", "rate"))}
    sync = []
    for b in cfg["betas"]:
        u = b * probs[nb].scores
        w = jax.vmap(lambda uu: resolve("oscillator", DEFAULTS["oscillator"]).weights(uu, None, None))(u)
        sync.append(float(jnp.mean(B.tv_distance(w, B.synchronised_limit(u)))))
    rows = []
    for j, b in enumerate(cfg["betas"]):
        rows.append([fmt(b)] + [fmt(by_beta[name][j].tv) for name in ("race", "oscillator", "rate")]
                    + [fmt(by_beta["oscillator"][j].tv_floor), fmt(sync[j])]
                    + [fmt(by_beta[name][j].err) for name in ("race", "oscillator", "rate")])
    doc["beta"] = say.table(
        ["β", "race TV", "oscillator TV", "rate TV", "oscillator limit's TV", "oscillator TV to uniform on {u>0}",
         "race out. err", "oscillator out. err", "rate out. err"], rows)

    # ---------------------------------------------------------------------------------------------- cost
    say("## time per call at the default study settings (beta = 1)")
    rows = []
    for n in cfg["sizes"]:
        soft = B.measure("softmax", {}, probs[n], 1.0, key)
        row = [str(n), fmt(soft.us_per_call)]
        for name in ("race", "oscillator", "rate"):
            m = B.measure(name, DEFAULTS[name], probs[n], 1.0, jax.random.fold_in(key, 600 + n))
            row += [fmt(m.us_per_call), fmt(m.us_per_call / soft.us_per_call), fmt(m.tv)]
        rows.append(row)
    doc["cost"] = say.table(
        ["n", "softmax µs", "race µs", "race ×", "race TV", "oscillator µs", "osc ×", "osc TV", "rate µs", "rate ×", "rate TV"], rows)

    _plots(out, cfg, race, rate, osc, eps_rows, by_beta, sync)
    _write_doc(out, cfg, doc, slopes, halving, deviation, factors, osc_slopes, eps_rows, by_beta, sync, say.lines[:2])
    say(f"# wrote {out / 'bridge.md'} and PNGs in {time.perf_counter() - t_start:.0f} s")
    mean_slope = float(np.mean(list(slopes.values())))
    print(f"race convergence exponent (mean over n, expected -0.5): {mean_slope:.3f}")


def _plots(out, cfg, race, rate, osc, eps_rows, by_beta, sync) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for n, ms in race.items():
        k = [m.options["cycles"] for m in ms]
        ax.loglog(k, [m.tv for m in ms], "o-", label=f"n = {n}")
    k = np.asarray(cfg["race_k"], float)
    ax.loglog(k, race[cfg["sizes"][0]][0].tv * (k / k[0]) ** -0.5, "k--", lw=1, label="K^-1/2")
    ax.set(xlabel="gamma cycles K", ylabel="TV distance to softmax", title="Gamma-cycle race")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bridge_race.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for n, ms in rate.items():
        ax.semilogy([m.options["steps"] for m in ms], [max(m.tv, 1e-9) for m in ms], "o-", label=f"n = {n}")
    s = np.asarray(cfg["rate_s"], float)
    ax.semilogy(s, rate[cfg["sizes"][0]][0].tv * 0.8 ** (s - s[0]), "k--", lw=1, label="0.8^S")
    ax.set(xlabel="relaxation steps S", ylabel="TV distance to softmax", title="Rate competition")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bridge_rate.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for n, ms in osc.items():
        s = [m.options["steps"] for m in ms]
        axes[0].loglog(s, [m.tv for m in ms], "o-", label=f"to softmax, n = {n}")
        axes[0].loglog(s, [m.tv_limit for m in ms], "x:", label=f"to its limit, n = {n}")
    axes[0].set(xlabel="Euler steps S", ylabel="TV distance", title="Oscillator: steps (β = 1, ε = 1e-4)")
    axes[0].legend(fontsize=7)
    e = [m.options["offset"] for m in eps_rows]
    axes[1].loglog(e, [m.tv for m in eps_rows], "o-", label="S = 1000, to softmax")
    axes[1].loglog(e, [max(m.tv_floor, 1e-9) for m in eps_rows], "x:", label="S → ∞ limit, to softmax")
    axes[1].set(xlabel="initial offset from antiphase ε", ylabel="TV distance", title="Oscillator: offset (β = 2)")
    axes[1].legend(fontsize=7)
    b = cfg["betas"]
    axes[2].loglog(b, [m.tv for m in by_beta["oscillator"]], "o-", label="to softmax(βs)")
    axes[2].loglog(b, [m.tv_limit for m in by_beta["oscillator"]], "x:", label="to its S → ∞ limit")
    axes[2].loglog(b, sync, "s--", label="to uniform on {s > 0}")
    axes[2].set(xlabel="β (≡ coupling gain)", ylabel="TV distance", title="Oscillator: scores/coupling (S = 200)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bridge_oscillator.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ms in by_beta.items():
        ax.loglog(cfg["betas"], [max(m.tv, 1e-9) for m in ms], "o-", label=name)
    ax.set(xlabel="β", ylabel="TV distance to softmax(βs)",
           title=f"n = {cfg['beta_n']}; race K = 256, oscillator S = 200, rate S = 50")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bridge_beta.png", dpi=110)
    plt.close(fig)


def _trend(ms, betas) -> str:
    tv = [m.tv for m in ms]
    a, b, top = tv[0], tv[-1], int(np.argmax(tv))
    text = f"goes from {fmt(a)} at β = {fmt(betas[0])} to {fmt(b)} at β = {fmt(betas[-1])}"
    return text + (f" (largest, {fmt(tv[top])}, at β = {fmt(betas[top])})" if 0 < top < len(tv) - 1 else "")


def _write_doc(out, cfg, doc, slopes, halving, deviation, factors, osc_slopes, eps_rows, by_beta, sync, header) -> None:
    nb = cfg["beta_n"]
    betas = cfg["betas"]
    osc_b = by_beta["oscillator"]
    first_bad = next((b for b, m in zip(betas, osc_b) if m.tv > 0.1), None)
    big = len(betas) - 1
    slope_txt = ", ".join(f"{slopes[n]:.3f} (n = {n})" for n in cfg["sizes"])
    half_txt = ", ".join(f"{halving[n]:.3f} (n = {n})" for n in cfg["sizes"]) if halving else "not measured in this run"
    fac_txt = ", ".join(f"{factors[n]:.3f} (n = {n})" for n in cfg["sizes"])
    osc_txt = ", ".join(f"{osc_slopes[n]:.3f} (n = {n})" for n in cfg["sizes"])
    eps_small = eps_rows[-1]
    intro = (
        "Generated by `python benchmarks/bridge.py`; every number below was printed by that run"
        f" ({header[0].lstrip('# ')}). Mechanisms and formulas: `attention/mechanisms/`; measurement:"
        " `benchmarks/bridge_study.py`."
    )
    setup = (
        "**Setup.** Each problem has n candidates with scores s ~ N(0, 1) and values V ~ N(0, 1) (d_v ="
        f" {cfg['d_v']}); problems per size: {cfg['count']}. A mechanism receives the logits u = β·s; the reference"
        " is p = softmax(βs). Errors: total-variation distance TV = ½Σ|w − p| and the relative error of the attended"
        " output ‖wV − pV‖/‖pV‖, averaged over the problems (± one standard error). Time per call is per problem,"
        " amortised over a jitted batch of 16, best of 3, on the machine above (2 shared CPU cores: timings are noisy)."
    )
    race = (
        "1. **Gamma-cycle race converges to softmax as K^(-1/2).** Its win frequencies are unbiased for softmax; the"
        f" fitted exponents of TV against K (K ≥ 256) are {slope_txt}, and TV(K = 4096)/TV(K = 1024) = {half_txt}"
        " (0.5 expected). At small K relative to the number of candidates with appreciable weight the TV saturates"
        " below its maximum of 1 (n = 512, K ≤ 64, where the normal approximation predicts more than 1), so a fit"
        f" over all K gives a shallower exponent there (table). For K ≥ 256 the measured TV is within"
        f" {100 * deviation:.1f} % of the normal-approximation prediction ½Σ√(2p(1−p)/(πK)). Cost grows linearly in K"
        " (one exponential sample per candidate per cycle, the dominant cost on a CPU), so each halving of the error"
        " costs 4× the time."
    )
    rate = (
        "2. **Rate competition converges to softmax geometrically in S.** Its fixed point is exactly softmax; the"
        f" fitted factor per step is {fac_txt}, against the predicted 1 − min(leak, inhibition) = 0.8. Before"
        " convergence its weights are flatter than softmax (u_j = (1 − (1 − leak)^S)·u*_j) and their sum is off by the"
        " pool's lag."
    )
    osc = (
        "3. **Oscillator synchrony does not converge to softmax in general.** As S → ∞ it converges (TV to its limit"
        f" ∝ S^b with b = {osc_txt}, the first-order Euler error) to the exact phase flow, whose weights are the"
        " normalised logistic σ(g·u + log tan²(ε/2)), not softmax. That limit equals softmax only while every"
        " candidate is still far from phase-locking (g·u_j ≪ 2 log(1/tan(ε/2))): at β = 2 the limit's TV to softmax"
        f" is {fmt(eps_small.tv_floor)} for ε = {fmt(eps_small.options['offset'])} but {fmt(eps_rows[0].tv_floor)}"
        f" for ε = {fmt(eps_rows[0].options['offset'])}. With ε = 1e-4 and S = 200 its TV to softmax exceeds 0.1"
        f" from β = {fmt(first_bad) if first_bad is not None else '(not reached)'} on, and at β = {fmt(betas[big])}"
        f" it is {fmt(osc_b[big].tv)}. Instead of concentrating on the best candidate as softmax does, the weight"
        " spreads over the candidates whose positive scores make them phase-lock with the query: the TV to the"
        f" uniform distribution on {{s > 0}} falls from {fmt(max(sync))} at β = {fmt(betas[int(np.argmax(sync))])}"
        f" to {fmt(sync[big])} at β = {fmt(betas[big])}, and the closed-form limit tends to that uniform distribution"
        " as β → ∞. Coupling enters only through the product coupling·β, so the β sweep is also the coupling sweep."
    )
    trend = (
        f"4. **Against β at fixed budgets** (n = {nb}; race K = 256, oscillator S = 200, rate S = 50): the race's TV"
        f" {_trend(by_beta['race'], betas)} (sharper weights have smaller variance p(1 − p)/K); the rate model's"
        f" {_trend(by_beta['rate'], betas)}; the oscillator's {_trend(osc_b, betas)} (saturation, 3)."
    )
    race_grad = (
        "| race | straight-through to the expectation (default): forward = win frequencies, gradient = that of"
        ' softmax(u), its expectation; or `grad="relaxed"`: the Gumbel-softmax relaxation of each race at'
        " temperature τ |"
    )
    print("## conclusions (as written to bridge.md)")
    for paragraph in (race, rate, osc, trend):
        print(paragraph)
    lines = [
        "# The bridge: biologically oriented attention against softmax",
        "",
        intro,
        "",
        setup,
        "",
        "## Conclusions",
        "",
        race,
        rate,
        osc,
        trend,
        "",
        "## Differentiability",
        "",
        "| Mechanism | How gradients flow (implemented in `attention/mechanisms/`) |",
        "|---|---|",
        race_grad,
        "| oscillator | relaxation: exact gradients through the S unrolled Euler steps |",
        "| rate | relaxation: exact gradients through the S unrolled steps |",
        "",
        "## Gamma-cycle race",
        "",
        "![race](bridge_race.png)",
        "",
        *doc["race"], "", *doc["race_fit"], "",
        "## Rate competition",
        "",
        "![rate](bridge_rate.png)",
        "",
        *doc["rate"], "", *doc["rate_fit"], "",
        "## Oscillator synchrony",
        "",
        "![oscillator](bridge_oscillator.png)",
        "",
        *doc["osc_s"], "", *doc["osc_s_fit"], "", *doc["osc_eps"], "",
        "## All mechanisms against β",
        "",
        "![beta](bridge_beta.png)",
        "",
        *doc["beta"], "",
        "## Cost",
        "",
        "Time per call (µs) at the settings of the β sweep, and the ratio to softmax measured in the same run.",
        "",
        *doc["cost"], "",
    ]
    (out / "bridge.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
