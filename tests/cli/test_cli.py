"""The ``dmm`` command (`dmm.cli.main`, called in-process): every subcommand against the library's own results and
the canonical detector trace, every program of the registry through run + show + plot, and every error path
(exit status 2, one line on stderr, no traceback)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import dmm
import dmm.files
import programs
from dmm.cli import args as cli_args
from dmm.cli import run as cli_run
from helpers import counter, dmm_cmd




def fails(capsys, *argv, match: str) -> str:
    rc, out, err = dmm_cmd(capsys, *argv)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmm: error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def is_png(path) -> bool:
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def counter_program() -> dmm.Program:
    return counter("src")


# ------------------------------------------------------------------------------------------------- run
def test_run_a_registered_program_with_args(capsys):
    rc, out, err = dmm_cmd(capsys, "run", "duplicate_detector", "--arg", "text=ab,ca.", "--arg", "every=5", "--steps", "40")
    assert rc == 0 and err == "", err  # no chatter on stderr when it is not a terminal
    assert "recorded 11 streams -> trace.npz" in out
    saved = dmm.files.load_trace("trace.npz")
    direct = dmm.compile(programs.duplicate_detector(text="ab,ca.", every=5)).run(40)
    assert saved.names == direct.names
    for s in direct.names:
        np.testing.assert_array_equal(saved[s], direct[s])
    # 'a' is read again at cycle 21 (= 4 * 5 + 1) and reaches output.dict-1 four links later
    assert int(np.argmax(saved["output.dict-1"] >= 1)) + 1 == 25


def test_run_converts_args_to_the_declared_types():
    fn = programs.duplicate_detector
    assert cli_args.program_args("d", fn, ["every=3", "clip=none", "text=42"]) == {"every": 3, "clip": None, "text": "42"}
    assert cli_args.program_args("d", fn, ["clip=4"]) == {"clip": 4.0}
    assert cli_args.program_args("d", fn, ["text=a, b.c"]) == {"text": "a, b.c"}

    def sample(n: int, flag: bool = False, sizes: tuple[int, ...] = (), table: dict[int, float] | None = None):
        """a test program"""

    got = cli_args.program_args("s", sample, ["n=2", "flag=yes", "sizes=[1,2]", 'table={"3": 0.5}'])
    assert got == {"n": 2, "flag": True, "sizes": (1, 2), "table": {3: 0.5}}
    assert cli_args.program_args("s", sample, ["n=1", "sizes=4,5"])["sizes"] == (4, 5)
    with pytest.raises(cli_args.CLIError, match="needs --arg n=VALUE"):
        cli_args.program_args("s", sample, [])
    with pytest.raises(cli_args.CLIError, match="expected an integer"):
        cli_args.program_args("s", sample, ["n=1.5"])


def test_run_a_program_file_with_inputs_and_a_selection(capsys):
    dmm.files.save_program(counter_program(), "counter")
    xs = np.arange(12, dtype=np.float32) % 3
    np.save("xs.npy", xs)
    rc, out, err = dmm_cmd(capsys, "run", "counter.json", "--input", "src.out=xs.npy", "--record", "cnt", "--out", "c.npz")
    assert rc == 0
    tr = dmm.files.load_trace("c.npz")
    assert tr.names == ["cnt.accum", "cnt.delta", "cnt.out"] and tr.steps == 12  # steps from the input's length
    direct = dmm.compile(counter_program()).run(12, inputs={"src.out": xs}, record="all")
    for s in tr.names:
        np.testing.assert_array_equal(tr[s], direct[s])
    # c = 1 + (cycles where the input was fed) : cnt.out at cycle c sums the inputs of cycles 1..c-1
    np.testing.assert_array_equal(tr["cnt.out"], np.concatenate([[0], np.cumsum(xs)[:-1]]))


def test_run_saves_the_program_it_built(capsys):
    rc, out, _ = dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "3", "--save-program", "det", "-q")
    assert rc == 0 and "saved the program as det.json" in out
    assert dmm.files.load_program("det.json") == programs.duplicate_detector()
    rc, _, _ = dmm_cmd(capsys, "run", "det", "--steps", "3", "--out", "again.npz", "-q")  # a stem names the file
    assert rc == 0
    np.testing.assert_array_equal(dmm.files.load_trace("again.npz")["timer.out"], [1, 2, 3])


def test_long_runs_go_in_chunks_with_progress_and_the_same_trace(monkeypatch, capsys):
    monkeypatch.setattr(cli_run, "CHUNK_MIN_STEPS", 10)
    m = dmm.compile(counter_program())
    xs = np.random.default_rng(0).normal(size=25).astype(np.float32)
    seen = []
    chunked = cli_run.run_program(m, 25, inputs={"src.out": xs}, record="all", key=jax.random.key(0),
                                  report=lambda done, total, s: seen.append((done, total)))
    whole = m.run(25, inputs={"src.out": xs}, record="all")
    assert seen == [(3 * i, 25) for i in range(1, 9)] + [(25, 25)]
    assert chunked.first_cycle == 0 and chunked.names == whole.names
    for s in whole.names:
        np.testing.assert_array_equal(chunked[s], whole[s])
    np.testing.assert_array_equal(chunked.state.outputs["number"], whole.state.outputs["number"])
    rc, _, err = dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "12")
    assert rc == 0 and err.splitlines()[-1].startswith("cycle 12/12 (100%)")
    rc, _, err = dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "12", "-q")
    assert rc == 0 and err == ""


def test_progress_on_a_terminal_is_one_transient_line(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc, out, err = dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "5")
    assert rc == 0 and "\r\033[Kcompiling duplicate_detector: 9 neurons, 11 links ..." in err
    assert err.endswith("\r\033[K") and "\n" not in err  # erased at the end
    rc, out, err = dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "5", "--record", "ghost.out")
    assert rc == 2 and err.endswith("\r\033[Kdmm: error: unknown stream 'ghost.out'\n")


# ------------------------------------------------------------------------------------------------ show
@pytest.fixture
def detector_trace(capsys):
    assert dmm_cmd(capsys, "run", "duplicate_detector", "--steps", "150", "-q")[0] == 0
    return "trace.npz"


def test_show_changes_of_the_detector_outputs(capsys, detector_trace):
    rc, out, _ = dmm_cmd(capsys, "show", detector_trace, "--streams", "output", "--changes")
    assert rc == 0
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    # the canonical trace (docs/semantics.md §6.1): dict-1 rises at 35, 65, 145; dict-2 at 114, 124, 134, 144
    assert rows == [["1", "0", "0"], ["35", "1", "0"], ["65", "2", "0"], ["114", "2", "1"], ["124", "2", "2"],
                    ["134", "2", "3"], ["144", "2", "4"], ["145", "3", "4"]]


def test_show_keyed_values_as_label_dicts(capsys, detector_trace):
    rc, out, _ = dmm_cmd(capsys, "show", detector_trace, "--streams", "accum.out,timer.out", "--cycles", "34:35")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "trace.npz: 150 cycles (1..150), 11 streams"
    assert lines[2].split() == ["cycle", "accum.out", "timer.out"]
    assert lines[3].startswith("   34  {'t': 2, 'e': 1, 's': 1}") and lines[3].endswith("34")
    assert len(lines) == 5


def test_show_list_limit_and_clock_detection(capsys, detector_trace):
    rc, out, _ = dmm_cmd(capsys, "show", detector_trace, "--list")
    assert rc == 0
    row = next(line for line in out.splitlines() if line.startswith("accum.out"))
    assert row.split()[1:4] == ["chars", "(keyed)", "(9,)"]
    rc, out, _ = dmm_cmd(capsys, "show", detector_trace, "--limit", "5", "--streams", "timer")
    assert "... 145 more cycles" in out
    rc, out, _ = dmm_cmd(capsys, "show", detector_trace, "--streams", "timer,norm", "--changes")
    assert "timer.out changed at nearly every cycle" in out
    assert [line.split()[0] for line in out.splitlines() if line[:5].strip().isdigit()] == ["1", "3", "33", "63", "143"]


# ------------------------------------------------------------------------------------------------ plot
def test_plot_writes_figures(capsys, detector_trace):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    rc, out, _ = dmm_cmd(capsys, "plot", detector_trace)
    assert rc == 0 and out.startswith("wrote trace.png: 9 panels, 2 constant streams")
    assert matplotlib.image.imread("trace.png").shape[1] > 1000
    rc, out, _ = dmm_cmd(capsys, "plot", detector_trace, "-o", "part.png", "--streams", "output", "--cycles", "100:")
    assert rc == 0 and out.startswith("wrote part.png: 2 panels")
    assert is_png("part.png")


def test_plot_without_matplotlib_names_the_extra(capsys, detector_trace, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    fails(capsys, "plot", detector_trace, match="plotting needs matplotlib: pip install 'dmm[plot]'")
    fails(capsys, "demo", match="plotting needs matplotlib: pip install 'dmm[plot]'")


# ------------------------------------------------------------------------------------ programs, demo
def test_programs_lists_the_registry(capsys):
    rc, out, _ = dmm_cmd(capsys, "programs")
    assert rc == 0
    lines = out.splitlines()
    registry = dmm.registered_programs()
    assert len(registry) >= 10 and f"{len(registry)} programs." in out
    for name, fn in registry.items():
        line = next(x for x in lines if x.split()[0] == name)
        first = " ".join((fn.__doc__ or "").split())[:30]
        assert first[:20] in line
    rc, out, _ = dmm_cmd(capsys, "programs", "-v")
    assert "duplicate_detector(text='test string.', every=10, clip=None)" in out


def test_programs_are_described_from_their_source_as_the_imported_builders_describe_themselves():
    """`describe_programs` reads the entry points' source files (no import); the result equals what the imported
    functions say of themselves (docstring summary, parameters with their defaults)."""
    code = ("import sys, dmm; infos = dmm.describe_programs(); "
            "print(sorted(m for m in ('jax', 'programs', 'neurons') if m in sys.modules)); "
            "print(repr(infos))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    loaded, described = out.splitlines()
    assert loaded == "[]"
    expected = {name: dmm.ProgramInfo.of(name, fn) for name, fn in dmm.registered_programs().items()}
    assert described == repr(expected)


@pytest.mark.parametrize("argv", [["--help"], ["programs"], ["programs", "-v"], ["show", "TRACE", "--cycles", "1:5"],
                                  ["show", "TRACE", "--list"]])
def test_quick_commands_do_not_import_jax(tmp_path, argv):
    """What keeps ``dmm --help``, ``programs`` and ``show`` within a few NumPy imports of time
    (`benchmarks/cli_startup.py` measures it): they never load JAX, optax, matplotlib or the builders."""
    trace = dmm.compile(counter()).run(6, record="all")
    dmm.files.save_trace(trace, tmp_path / "t.npz")
    argv = [str(tmp_path / "t.npz") if a == "TRACE" else a for a in argv]
    code = ("import sys; from dmm import cli; rc = cli.main(sys.argv[1:]); "
            "print(rc, sorted(m for m in ('jax', 'optax', 'matplotlib', 'programs', 'neurons') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines()[-1] == "0 []", run.stderr


def test_programs_come_from_the_entry_point_group():
    code = ("import sys, dmm; print('programs' in sys.modules); "
            "print('duplicate_detector' in dmm.registered_programs(), 'programs' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.splitlines()[-2:] == ["False", "True True"]
    assert dmm.registered_programs()["duplicate_detector"] is programs.duplicate_detector
    with pytest.raises(dmm.ProgramError, match="registered twice"):
        dmm.register_program(programs.duplicate_detector)


def test_a_loaded_trace_is_a_pytree_when_jax_is_imported_after_it(tmp_path):
    trace = dmm.compile(counter()).run(4, record="all")
    dmm.files.save_trace(trace, tmp_path / "t.npz")
    code = (f"import sys, dmm.files; t = dmm.files.load_trace({str(tmp_path / 't.npz')!r}); print('jax' in sys.modules); "
            "import jax; u = jax.tree_util.tree_map(lambda a: a * 2, t); "
            "print(type(u).__name__, all((u[s] == 2 * t[s]).all() for s in t))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.splitlines() == ["False", "Trace True"]


def test_demo_explains_and_draws(capsys):
    rc, out, err = dmm_cmd(capsys, "demo")
    assert rc == 0, err
    assert "became 1 at cycle 35, 2 at cycle 65, 3 at cycle 145" in out
    assert "became 1 at cycle 114, 2 at cycle 124, 3 at cycle 134, 4 at cycle 144" in out
    assert "the second 't' is read at cycle 31 and reaches output.dict-1 4 cycles later" in out
    assert "ends with its last character '.' at cycle 111; from then on the reader repeats" in out  # why 4 dots
    assert is_png("demo.png")


@pytest.mark.parametrize("name", sorted(dmm.registered_programs()))
def test_every_registered_program_runs_shows_and_plots(capsys, name):
    rc, out, err = dmm_cmd(capsys, "run", name, "--steps", "6", "--out", f"{name}.npz", "-q")
    assert rc == 0, err
    trace = dmm.files.load_trace(f"{name}.npz")
    assert trace.steps == 6 and len(trace) > 0
    rc, out, err = dmm_cmd(capsys, "show", f"{name}.npz", "--limit", "3")
    assert rc == 0, err
    for s in trace.names:
        assert s in out
    rc, out, err = dmm_cmd(capsys, "plot", f"{name}.npz", "-o", f"{name}.png")
    assert rc == 0, err
    assert is_png(f"{name}.png")


# ------------------------------------------------------------------------------------------- mistakes
def test_argument_mistakes(capsys):
    fails(capsys, match="choose a command")
    fails(capsys, "fly", match="invalid choice: 'fly'")
    fails(capsys, "run", match="the following arguments are required: PROGRAM")
    fails(capsys, "run", "duplicate_detector", "--steps", "ten", match="invalid int value: 'ten'")
    fails(capsys, "run", "duplicate_detector", "--backend", "magic", match="invalid choice: 'magic'")
    fails(capsys, "run", "duplicate_detector", "--steps", "0", match="--steps must be at least 1")
    fails(capsys, "show", "x.npz", "--limit", "0", match="--limit must be at least 1")


def test_run_mistakes(capsys):
    fails(capsys, "run", "no_such_program", match="unknown program 'no_such_program'")
    fails(capsys, "run", "missing.json", match="no program file missing.json")
    fails(capsys, "run", "duplicate_detector", "--arg", "speed=3", match="has no parameter 'speed'")
    fails(capsys, "run", "duplicate_detector", "--arg", "every", match="expected KEY=VALUE")
    fails(capsys, "run", "duplicate_detector", "--arg", "every=abc", match="--arg every=abc: expected an integer")
    fails(capsys, "run", "duplicate_detector", "--arg", "every=0", match="every >= 1")  # the program's own check
    fails(capsys, "run", "duplicate_detector", "--record", "timer.nope", match="timer.nope")
    dmm.files.save_program(counter_program(), "counter")
    fails(capsys, "run", "counter.json", "--arg", "x=1", match="a program file has none")
    fails(capsys, "run", "counter.json", "--input", "src.out=none.npy", match="no such file none.npy")
    fails(capsys, "run", "counter.json", "--input", "src.out", match="expected STREAM=FILE.npy")
    np.save("bad.npy", np.zeros((5, 2)))
    fails(capsys, "run", "counter.json", "--input", "src.out=bad.npy", match="external input 'src.out' has shape (5, 2)")
    np.save("ok.npy", np.zeros(5))
    fails(capsys, "run", "counter.json", "--input", "cnt.delta=ok.npy", match="is an input port")
    Path("junk.npy").write_bytes(b"not numpy")
    fails(capsys, "run", "counter.json", "--input", "src.out=junk.npy", match="junk.npy is not a .npy array file")
    Path("broken.json").write_text("{")
    fails(capsys, "run", "broken.json", match="broken.json: not valid JSON")


def test_show_and_plot_mistakes(capsys, detector_trace):
    fails(capsys, "show", "absent.npz", match="no such trace file absent.npz")
    Path("junk.npz").write_bytes(b"garbage")
    fails(capsys, "show", "junk.npz", match="junk.npz: unreadable or truncated .npz")
    fails(capsys, "show", detector_trace, "--streams", "timer.in", match="unknown stream 'timer.in'")
    fails(capsys, "show", detector_trace, "--cycles", "a:b", match="--cycles 'a:b': expected FIRST:LAST")
    fails(capsys, "show", detector_trace, "--cycles", "200:300", match="no cycles in 200:300 (the trace has cycles 1..150)")
    fails(capsys, "plot", "absent.npz", match="no such trace file absent.npz")
    fails(capsys, "plot", detector_trace, "--streams", "ghost", match="unknown stream 'ghost'")
    fails(capsys, "plot", detector_trace, "--frames", "0", match="--frames must be at least 1")


def test_the_installed_command_exits_with_status_2():
    done = subprocess.run([sys.executable, "-m", "dmm.cli", "run", "no_such_program"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dmm: error: unknown program 'no_such_program': no file no_such_program.json and no registered program of that "
        "name (dmm programs lists them)"]



def test_help_and_version(capsys):
    rc, out, _ = dmm_cmd(capsys, "--help")
    assert rc == 0 and all(c in out for c in ("run", "show", "plot", "programs", "demo"))
    rc, out, _ = dmm_cmd(capsys, "--version")
    assert rc == 0 and out.strip() == f"dmm {dmm.__version__}"


LEAKY = '''
import dmm

@dmm.neuron_type("leaky_gate_cli_test")
def leaky(rate: float = 0.5):
    """y.out = rate * x.in."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER}, fn=lambda p, x, ctx: {"out": rate * x["in"]})
'''


def test_a_program_with_a_custom_neuron_type_runs_from_the_command_line_two_ways(tmp_path):
    """With ``--import MODULE`` (``python -m dmm`` here), and with no option at all once the module is declared in
    the ``dmm.neurons`` entry-point group (a dist-info folder on the path, as an installed package would have)."""
    (tmp_path / "leaky.py").write_text(LEAKY)
    build = ("import dmm, dmm.files, neurons, leaky\n"
             "p = dmm.Program(); p.add('one', neurons.const(1.0)); p.add('g', leaky.leaky(0.25))\n"
             "p.link('one.out', 'g.in', 1.0); dmm.files.save_program(p, 'leaky_prog')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, "-c", build], cwd=tmp_path, env=env, check=True)
    plain = subprocess.run([sys.executable, "-m", "dmm", "run", "leaky_prog.json", "--steps", "3"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert plain.returncode == 2 and "leaky_gate_cli_test" in plain.stderr
    run = [sys.executable, "-m", "dmm", "--import", "leaky", "run", "leaky_prog.json", "--steps", "3", "--out", "a.npz"]
    first = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert dmm.files.load_trace(tmp_path / "a.npz")["g.out"].tolist() == [0.0, 0.25, 0.25]
    info = tmp_path / "leakypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leakypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dmm.neurons]\nleaky = leaky\n")
    second = subprocess.run([sys.executable, "-m", "dmm", "run", "leaky_prog.json", "--steps", "3", "--out", "b.npz"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert dmm.files.load_trace(tmp_path / "b.npz")["g.out"].tolist() == [0.0, 0.25, 0.25]
    bad = subprocess.run([sys.executable, "-m", "dmm", "--import", "no_such_module_x", "programs"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no_such_module_x" in bad.stderr
