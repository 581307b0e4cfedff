"""Issue 5's targets and the BENCHMARKS.md tables made from `vqclip bench --json` files (`--markdown DIR`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import ConfigError, first_line
from .quality import QUALITY_MIN
from .setup import BENCH_CONFIGS, SMOKE


def fmt_seconds(v: float) -> str:
    return f"{v * 1e3:.3g} ms" if v < 0.1 else f"{v:.3g} s"


# metric -> (name, how a value is written); "speedup" is steps/s over the reference path's (same config and device)
METRICS: dict[str, tuple[str, Callable[[float], str]]] = {
    "s_per_step_median": ("s/step", fmt_seconds),
    "images_per_hour": ("images/hour", lambda v: f"{v:,.0f}"),
    "peak_memory_bytes": ("peak memory", lambda v: f"{v / 1e9:.3g} GB"),
    "speedup": ("speed-up over the reference path", lambda v: f"{v:.3g}x"),
    "quality_ratio": ("quality ratio", lambda v: f"{v:.3g}"),
}


@dataclass(frozen=True)
class Target:
    """One target of issue 5: `metric` of `config`'s fast path against `limit`, on a device named like `device`."""

    config: str
    metric: str  # a key of METRICS
    op: str  # "<=" or ">="
    limit: float
    device: str = "H100"  # a target is judged on any device, with a note when the device is not this one

    @property
    def label(self) -> str:
        name, fmt = METRICS[self.metric]
        return f"{name} {self.op} {fmt(self.limit)} on {self.device}"

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit


# the one list of targets: the markdown report, its tests and BENCHMARKS.md's method all read it
TARGETS = (
    Target("S", "s_per_step_median", "<=", 0.004),
    Target("S", "speedup", ">=", 4.0),
    Target("S", "quality_ratio", ">=", QUALITY_MIN),
    Target("S8", "images_per_hour", ">=", 2500),
    Target("M", "s_per_step_median", "<=", 0.012),
    Target("M", "speedup", ">=", 4.0),
    Target("M", "quality_ratio", ">=", QUALITY_MIN),
    Target("L", "peak_memory_bytes", "<=", 24e9),
    Target("CPU", "s_per_step_median", "<=", 1.2, device="cpu"),  # issue 17: 2 cores, quiet machine
    Target("CPU", "quality_ratio", ">=", QUALITY_MIN, device="cpu"),
)


def load_results(folder: Path) -> list[dict]:
    """Every `vqclip bench --json` file in folder (*.json); anything else there is a one-line error."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"no bench JSON files in {folder}; write some with vqclip bench --json {folder}/NAME.json")
    results = []
    for f in files:
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {f} ({first_line(e)}); remove it or rerun its benchmark") from None
        if not isinstance(r, dict) or not {"config", "path", "device", "s_per_step_median"} <= set(r):
            raise ConfigError(
                f"{f} is not a vqclip bench JSON (no config/path/device/s_per_step_median); move it out of {folder}"
            )
        results.append(r)
    return results


def reference_for(r: dict, results: Sequence[dict]) -> Optional[dict]:
    """The reference-path result of r's config on r's device, if there is one."""
    refs = [x for x in results if x["path"] == "reference" and (x["config"], x["device"]) == (r["config"], r["device"])]
    return refs[-1] if refs else None


def speedup(r: dict, results: Sequence[dict]) -> Optional[float]:
    ref = reference_for(r, results)
    return r["steps_per_s"] / ref["steps_per_s"] if ref is not None and r["path"] != "reference" else None


def path_label(r: dict) -> str:
    if r["path"] == "reference":
        return "reference (fp32 eager)"
    fast = r.get("fast_path", {})
    parts = [k for k, v in fast.items() if v is True and k != "compile"]
    if fast.get("compile"):
        parts.append(f"compile {fast.get('compile_mode', 'default')}")
    return f"fast: {', '.join(parts)}" if parts else "fast = reference (fp32)"


def bench_command(r: dict) -> str:
    """The `vqclip bench` command that measures r again."""
    cmd = "vqclip bench --smoke" if r["config"] == SMOKE.name else f"vqclip bench --config {r['config']}"
    fast = r.get("fast_path", {})
    if r["path"] == "reference":
        cmd += " --reference"
    elif fast.get("compile"):
        mode = fast.get("compile_mode", "default")
        cmd += " --compile" + (f" --compile-mode {mode}" if mode != "default" else "")
    return f"{cmd} --steps {r['steps']}"


def check_targets(results: Sequence[dict]) -> list[dict]:
    """One verdict per target and fast-path result of its config (met None: no figure, or not measured)."""
    out = []
    for t in TARGETS:
        fast = [r for r in _ordered(results) if r["config"] == t.config and r["path"] != "reference"]
        if not fast:
            out.append({"target": t, "result": None, "value": None, "met": None, "note": "not measured"})
        for r in fast:
            value = speedup(r, results) if t.metric == "speedup" else r.get(t.metric)
            note = ""
            if value is None:
                note = "no reference run" if t.metric == "speedup" else "no figure"
            elif t.device.lower() not in r["device"].lower():
                note = f"measured on {r['device']}, the target is for {t.device}"
            out.append(
                {"target": t, "result": r, "value": value, "met": None if value is None else t.met(value), "note": note}
            )
    return out


def _ordered(results: Sequence[dict]) -> list[dict]:
    names = list(BENCH_CONFIGS)

    def key(r: dict):
        fast = r.get("fast_path", {})
        return (
            names.index(r["config"]) if r["config"] in names else len(names),
            r["config"],
            r["path"] == "reference",
            bool(fast.get("compile")),
            fast.get("compile_mode", ""),
            r["device"],
        )

    return sorted(results, key=key)


def markdown(results: Sequence[dict]) -> str:
    """BENCHMARKS.md's tables for these results: one row per run, then every target with met or not met."""
    lines = [
        "| config | path | device | s/step median (p10-p90) | steps/s | images/hour | peak memory | TFLOP/s "
        "| quality | speed-up vs reference | command |",
        "|" + "---|" * 11,
    ]
    for r in _ordered(results):
        med, p10, p90 = r["s_per_step_median"], r["s_per_step_p10"], r["s_per_step_p90"]
        unit, scale = ("ms", 1e3) if med < 0.1 else ("s", 1)
        q = r.get("quality_ratio")
        quality = "n/a" if q is None else f"{q:.3f}" + ("" if r.get("quality_pass") else " (FAIL)")
        up = speedup(r, results)
        lines.append(
            f"| {r['config']} | {path_label(r)} | {r['device']} | {med * scale:.3g} {unit} ({p10 * scale:.3g}-"
            f"{p90 * scale:.3g}) | {r['steps_per_s']:.3g} | {r['images_per_hour']:,.0f} | "
            f"{METRICS['peak_memory_bytes'][1](r['peak_memory_bytes'])} | {r['tflops_achieved']:.3g} | {quality} | "
            f"{'n/a' if up is None else METRICS['speedup'][1](up)} | `{bench_command(r)}` |"
        )
    lines += ["", "| config | target | path | measured | verdict |", "|---|---|---|---|---|"]
    for v in check_targets(results):
        t, r = v["target"], v["result"]
        measured = "n/a" if v["value"] is None else METRICS[t.metric][1](v["value"])
        verdict = {True: "met", False: "**not met**", None: "n/a"}[v["met"]]
        if v["note"]:
            verdict += f" ({v['note']})"
        lines.append(f"| {t.config} | {t.label} | {'-' if r is None else path_label(r)} | {measured} | {verdict} |")
    envs = sorted(
        {
            ", ".join(f"{k} {x}" for k, x in r.get("versions", {}).items() if x)
            + (f", {r['date']}" if r.get("date") else "")
            for r in results
        }
    )
    lines += [""] + [f"Measured with {e}." for e in envs]
    return "\n".join(lines)
