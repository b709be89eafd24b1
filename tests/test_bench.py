"""The box benchmark: `tvrec bench device` and `tvrec-device bench` (one implementation, one
JSON), per-workload estimates, calibration from two real runs, cgroup enforcement and the
engine's low-memory screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.bench import machine_info, method_of
from device.budget import PROFILES, Factors, calibrate, profile, verdicts, with_factors

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo/bundle"
TVREC = Path(sys.executable).parent / "tvrec"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
#: Rows a degraded (low-memory) home() leaves out: those ranked by CF or the content model.
PERSONAL = {"top_picks", "because", "new"}

A53_CPUINFO = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd03
CPU revision\t: 4

Hardware\t: Amlogic
"""


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=timeout)


# --------------------------------------------------------------------------- plain functions


def test_machine_info_reads_the_arm_core_and_the_method_follows_the_arch():
    m = machine_info(A53_CPUINFO)
    assert m["cpu_model"].startswith("Cortex-A53")
    assert method_of({**m, "arch": "aarch64"}) == "measured"
    assert method_of({**m, "arch": "armv7l"}) == "measured"
    assert method_of({**m, "arch": "x86_64"}) == "estimated"
    host = machine_info()
    assert host["arch"] and host["cpu_model"] and host["cores"] >= 1
    assert host["emulated"] is False or host["arch"] in ("aarch64", "armv7l")


def test_estimates_are_per_workload_and_a_box_run_takes_no_factor():
    hw = profile("entry")
    f = hw.factors
    assert (f.cpu, f.decode, f.int8) == (4.0, 6.0, 8.0)
    v = {x.name: x for x in verdicts(hw, rss_peak_mb=50, cold_start_ms=100, home_ms_p95=10,
                                     embed_ms_p50=30, model_bytes=10, decode_ms_p50=28,
                                     embed_model_ms_p50=2)}
    assert v["home_ms_p95"].box_estimate == 40 and v["cold_start_ms"].box_estimate == 400
    assert v["embed_ms_p50"].box_estimate == pytest.approx(28 * 6 + 2 * 8)  # part by part
    assert v["embed_ms_p50"].factor == pytest.approx((28 * 6 + 2 * 8) / 30, abs=1e-3)
    assert v["engine_rss_mb"].box_estimate == 50 and not v["engine_rss_mb"].estimated
    box = {x.name: x for x in verdicts(hw, rss_peak_mb=50, cold_start_ms=100, home_ms_p95=10,
                                       embed_ms_p50=30, model_bytes=10, measured=True)}
    assert all(x.box_estimate == x.host and not x.estimated for x in box.values())
    slower = with_factors(hw, Factors(8.0, 6.0, 8.0, "test"))
    assert {x.name: x for x in verdicts(slower, rss_peak_mb=1, cold_start_ms=1, home_ms_p95=20,
                                        embed_ms_p50=None, model_bytes=None)}["home_ms_p95"].ok is False
    # every profile documents its factors' source and a slowdown for one-line labels
    assert all(p.factors.source and p.slowdown == p.factors.cpu for p in PROFILES.values())


# --------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    from tests.test_media import write_clip

    return write_clip(tmp_path_factory.mktemp("bench") / "clip.mp4", seconds=6.0, gop=12)


@pytest.fixture(scope="module")
def host_run(tmp_path_factory, clip) -> dict:
    out = tmp_path_factory.mktemp("bench") / "host.json"
    r = _run(str(TVREC), "bench", "device", "--bundle", str(DEMO), "--hardware", "entry",
             "--history", "40", "--repeats", "5", "--media", str(clip), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    data = json.loads(out.read_text())
    data["_stdout"] = r.stdout
    return data


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, clip) -> dict:
    out = tmp_path_factory.mktemp("bench") / "box.json"
    r = _run(sys.executable, "-m", "device.service", "bench", "--bundle", str(DEMO),
             "--hardware", "entry", "--history", "40", "--repeats", "5", "--media", str(clip),
             "--json", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_frame_sampling_what_if_for_another_sampling(clip, tmp_path):
    # The demo bundle is keyframe-sampled (rebuilt after issue 17); the what-if decodes it as an
    # "exact" bundle (every bundle before the field) would.
    out = tmp_path / "k.json"
    r = _run(sys.executable, "-m", "device.service", "bench", "--bundle", str(DEMO),
             "--history", "10", "--repeats", "2", "--media", str(clip),
             "--frame-sampling", "exact", "--json", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["frame_sampling"] == "exact" and d["media_info"]["frame_sampling"] == "exact"
    assert "exact sampling" in r.stdout


def test_bench_device_json_has_the_interface_keys(host_run):
    r = host_run
    for key in ("method", "machine", "enforced", "oom_killed", "decode_ms_p50",
                "embed_model_ms_p50", "embed_ms_p50", "cold_start_ms", "import_ms",
                "home_ms_p95", "rss_peak_mb", "verdicts", "loadavg", "history_intact"):
        assert key in r, key
    assert r["method"] == "estimated" and r["estimated_from"].startswith(r["machine"]["arch"])
    assert r["enforced"] is None and r["oom_killed"] is False and r["history_intact"] is True
    assert r["media_info"]["frame_sampling"] == "keyframe"  # the demo bundle's own (issue 17)
    assert r["frame_sampling"] == "bundle"
    # cold start counts the imports and the interpreter
    assert r["cold_start_ms"] >= r["import_ms"] + r["open_ms"] + r["first_home_ms"] - 1e-6
    assert r["embed_ms_p50"] > 0 and r["decode_ms_p50"] > 0 and r["embed_model_ms_p50"] > 0
    v = {x["name"]: x for x in r["verdicts"]}
    # the estimate is the host's CPU time times the profile's factor, part by part for embed
    assert r["time_basis"] == "cpu"
    assert v["home_ms_p95"]["box_estimate"] == pytest.approx(r["home_cpu_ms_p95"] * 4.0)
    assert v["embed_ms_p50"]["box_estimate"] == pytest.approx(
        r["decode_cpu_ms_p50"] * 6.0 + r["embed_model_cpu_ms_p50"] * 8.0)
    out = r["_stdout"]
    assert "method: estimated" in out and "x4" in out and "load average" in out and "CPU" in out


def test_tvrec_device_bench_gives_the_same_json(host_run, device_run):
    assert set(device_run) == set(host_run) - {"_stdout"}
    assert device_run["bundle_fingerprint"] == host_run["bundle_fingerprint"]
    assert device_run["media_sha256"] == host_run["media_sha256"]


def test_calibrate_from_two_real_runs(host_run, device_run, tmp_path):
    out = calibrate(device_run, host_run)
    f = out["factors"]
    want_cpu = ((device_run["home_ms_p50"] / host_run["home_cpu_ms_p50"])
                * (device_run["cold_start_ms"] / host_run["cold_start_cpu_ms"])) ** 0.5
    assert f["cpu"] == pytest.approx(want_cpu, rel=1e-3)
    assert f["decode"] == pytest.approx(device_run["decode_ms_p50"] / host_run["decode_cpu_ms_p50"], rel=1e-3)
    assert f["int8"] == pytest.approx(device_run["embed_model_ms_p50"] / host_run["embed_model_cpu_ms_p50"], rel=1e-3)
    assert all(s.startswith("measured") for s in out["sources"].values())
    assert "not an ARM box" in out["note"]  # two host runs: said, not hidden
    # the CLI writes it, and --factors reads it back
    box, host = tmp_path / "box.json", tmp_path / "host.json"
    box.write_text(json.dumps(device_run))
    host.write_text(json.dumps({k: v for k, v in host_run.items() if k != "_stdout"}))
    fac = tmp_path / "factors.json"
    r = _run(str(TVREC), "bench", "calibrate", "--box", str(box), "--host", str(host), "--out", str(fac))
    assert r.returncode == 0, r.stderr
    assert json.loads(fac.read_text())["factors"]["cpu"] == f["cpu"]
    from device.budget import load_factors

    assert load_factors(fac).cpu == f["cpu"]
    other = dict(device_run, bundle_fingerprint="0" * 64)
    with pytest.raises(ValueError, match="different bundles"):
        calibrate(other, host_run)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = _run(str(TVREC), "bench", "calibrate", "--box", str(bad), "--host", str(host))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--box" in r.stderr


@pytest.mark.parametrize("args, what", [(["--repeats", "0"], "--repeats"),
                                        (["--history", "-5"], "--history"),
                                        (["--memory-mb", "50"], "--enforce")])
def test_bad_bench_flags_are_one_line_and_exit_2(args, what):
    r = _run(str(TVREC), "bench", "device", *args, timeout=60)
    assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _run(sys.executable, "-m", "device.service", "bench", "--bundle", str(DEMO), *args, timeout=60)
    assert r.returncode == 2 and what in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_old_profile_spelling_still_works_with_a_warning():
    r = _run(str(TVREC), "bench", "device", "--profile", "mid", "--repeats", "0", timeout=60)
    assert "--profile" in r.stderr and "--hardware" in r.stderr and "warning" in r.stderr
    assert r.returncode == 2  # and then the bad --repeats, as with --hardware


# --------------------------------------------------------------------------- low memory


def test_engine_serves_continue_and_popular_when_memory_runs_short(tmp_path, monkeypatch):
    from device.bench import prepare_history
    from device.budget import status_mb
    from device.engine import LOW_MEMORY_MB, Engine

    db = tmp_path / "h.db"
    prepare_history(DEMO, db, 40)
    with Engine(DEMO, db) as engine:
        full = [r.kind for r in engine.home("viewer")]
        assert engine.degraded is None and {"top_picks", "popular"} <= set(full)
        events = len(engine.history.events("viewer"))
    # A limit just above what this process holds: less headroom than the engine needs.
    monkeypatch.setenv("TVREC_MEMORY_LIMIT_MB", str(status_mb("VmRSS") + LOW_MEMORY_MB / 2))
    with Engine(DEMO, db) as engine:
        rows = engine.home("viewer")
        assert engine.degraded and "low memory" in engine.degraded
        kinds = [r.kind for r in rows]
        assert kinds == [k for k in full if k not in PERSONAL]  # the ranked rows go, in order
        assert {"continue", "popular"} <= set(kinds)
        engine.record("viewer", rows[-1].cards[0].item_id, "finish")  # it still records
        assert len(engine.history.events("viewer")) == events + 1
    monkeypatch.setenv("TVREC_MEMORY_LIMIT_MB", str(status_mb("VmRSS") + 10 * LOW_MEMORY_MB))
    with Engine(DEMO, db) as engine:
        engine.home("viewer")
        assert engine.degraded is None


# --------------------------------------------------------------------------- enforcement


def _cgroups_or_skip():
    from device.cgroup import Cgroup, CgroupUnavailable

    try:
        Cgroup.create("probe", memory_mb=64).remove()
    except CgroupUnavailable as why:
        pytest.skip(f"no writable cgroups here ({why}); `--enforce` then runs unenforced")


def test_cgroup_limits_are_real(tmp_path):
    from device.cgroup import Cgroup

    _cgroups_or_skip()
    with Cgroup.create("test", memory_mb=40, cpu_quota=0.5, cpu=0) as cg:
        code = ("from device.cgroup import memory_limit_mb; print(memory_limit_mb());"
                "b = bytearray(120 * 2**20); b[::4096] = b'x' * len(b[::4096])")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           preexec_fn=cg.enter_preexec, cwd=ROOT)
        assert r.stdout.split()[0] == "40.0"  # the child sees its limit
        assert r.returncode == -9  # 120 MB under 40: the kernel's OOM killer
        s = cg.stats()
        assert s["oom_kills"] >= 1 and s["cpu_periods"] >= 1
        assert cg.describe()["memory_limit_mb"] == 40 and cg.describe()["cpu_quota"] == 0.5


def test_entry_enforced_demo_serves_home_within_budget(clip, tmp_path):
    _cgroups_or_skip()
    out = tmp_path / "e.json"
    r = _run(str(TVREC), "bench", "device", "--bundle", str(DEMO), "--hardware", "entry",
             "--enforce", "--history", "40", "--repeats", "5", "--media", str(clip), "--json", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["enforced"]["memory_limit_mb"] == 96 and d["enforced"]["cpu_quota"] == 0.25
    assert d["enforced"]["cgroup"].startswith(("v1:", "v2:"))
    assert d["oom_killed"] is False and d["degraded"] is None and d["history_intact"] is True
    assert d["enforcement"]["cpu_periods"] > 0 and "cpu_throttled_periods" in d["enforcement"]
    v = {x["name"]: x for x in d["verdicts"]}
    assert v["engine_rss_mb"]["ok"] and v["embed_rss_mb"]["ok"]
    assert "enforced:" in r.stdout and "throttled" in r.stdout


def test_too_small_a_limit_degrades_without_losing_history(clip, tmp_path):
    _cgroups_or_skip()
    # Enough for the engine to open and serve, not for its personal rows' headroom.
    out = tmp_path / "d.json"
    r = _run(str(TVREC), "bench", "device", "--bundle", str(DEMO), "--enforce", "--memory-mb", "48",
             "--history", "40", "--repeats", "3", "--media", str(clip), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    d = json.loads(out.read_text())
    assert d["history_intact"] is True
    if "engine_failed" in d:  # this kernel charges more than expected: killed, still nothing lost
        assert d["oom_killed"] is True
    else:
        assert d["degraded"] and "low memory" in d["degraded"]
        assert not set(d["rows"]) & PERSONAL and {"continue", "popular"} <= set(d["rows"])
        # The embedding job either fits (library pages already in the page cache stay charged
        # to whoever loaded them first, so its charge is below its VmHWM) or is killed:
        # reported either way.
        assert d["oom_killed"] is d["embed_oom_killed"]
        assert d["enforcement_embed"]["memory_peak_mb"] <= 48 + 1
    # Far below what Python needs: the engine itself is killed; the report says so, one run.
    out2 = tmp_path / "k.json"
    r = _run(str(TVREC), "bench", "device", "--bundle", str(DEMO), "--enforce", "--memory-mb", "12",
             "--history", "40", "--repeats", "3", "--media", str(clip), "--json", str(out2))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    k = json.loads(out2.read_text())
    assert k["oom_killed"] is True and "engine_failed" in k and k["history_intact"] is True
    assert k["all_within_budget"] is False and "killed" in r.stdout


def test_sim_engine_process_runs_under_the_profile_limits(tmp_path):
    # The simulator's engine process (no Qt in it) with --enforce: it reports the limits and
    # what they did in every answer's stats, and serves home() under them.
    import multiprocessing as mp

    from simulator.engine_process import serve

    _cgroups_or_skip()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, str(DEMO), str(tmp_path / "h.db"), 1, "entry"))
    proc.start()
    try:
        assert parent.poll(120)
        tag, _, error, stats = parent.recv()
        assert tag == "ready" and error is None
        assert stats["enforced"]["memory_limit_mb"] == 96 and stats["enforced"]["cpu_quota"] == 0.25
        parent.send((1, "seed_demo", ()))
        parent.send((2, "home", ("alex",)))
        answers = [parent.recv() for _ in range(2)]
        assert answers[1][2] is None and answers[1][1]
        st = answers[1][3]
        assert st["enforcement"]["oom_kills"] == 0 and st["degraded"] is None
        assert st["rss_peak_mb"] < 96
    finally:
        parent.send(None)
        proc.join(30)
    assert proc.exitcode == 0


def test_episodic_synth_bundle_gives_series_ratings_and_up_next_at_scale(tmp_path):
    """The scale bench's TV bundle (synth_bundle(episodic_fraction=...)): series of 6-24
    episodes in release order, every item rated or unrated, and a history that finished an
    episode is offered the next one (Up next) -- the path that scanned the catalog once per
    series; a kids profile sees nothing rated above its age."""
    import numpy as np

    from device.bundle import open_bundle, synth_bundle
    from device.engine import Engine

    path = synth_bundle(tmp_path / "tv", 3000, seed=3, episodic_fraction=0.3)
    items = open_bundle(path, verify="full").items
    series = np.asarray(items.series, dtype=str)
    assert (series != "").sum() == 900
    for name in np.unique(series[series != ""]):
        rows = np.flatnonzero(series == name)
        assert 1 <= len(rows) <= 24
        order = list(zip(items.season[rows].tolist(), items.episode[rows].tolist()))
        assert order == sorted(order) and order[0] == (1, 1), name  # release order = episode order
    assert set(np.unique(items.maturity).tolist()) <= {-1, 0, 6, 12, 16, 18}
    assert open_bundle(synth_bundle(tmp_path / "plain", 300, seed=3)).items.series is None

    warm = [r for r in np.flatnonzero(series != "").tolist() if not items.cold[r]]
    first = next(r for r in warm if items.episode[r] == 1 and r + 1 < len(series)
                 and series[r + 1] == series[r] and not items.cold[r + 1]
                 and np.flatnonzero(series == series[r])[1] == r + 1)
    ids = [str(i) for i in items.ids]
    with Engine(path, tmp_path / "h.db") as eng:
        eng.add_profile("p")
        eng.add_profile("kid", kids_max_maturity=7)
        for other in warm[:40]:  # other series, started: many series in one history
            if series[other] != series[first]:
                eng.record("p", ids[other], "play", position=60.0)
        eng.record("p", ids[first], "finish")
        cont = next(r for r in eng.home("p") if r.kind == "continue")
        nxt = [c for c in cont.cards if c.kind == "next"]
        assert ids[first + 1] in [c.item_id for c in nxt]
        allowed = {ids[r] for r in np.flatnonzero((items.maturity >= 0) & (items.maturity <= 7))}
        assert all(c.item_id in allowed for row in eng.home("kid") for c in row.cards)
