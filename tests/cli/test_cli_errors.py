"""Every bad input to the ``dmm`` command is one line on stderr and exit status 2, naming the user's path or
argument: out-of-range numbers, string arrays, malformed files, builder errors, unwritable outputs; and a property
test that random option values and random file bytes never exit 1."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmm
import dmm.files
from helpers import counter, dmm_cmd




def fails(capsys, *argv, match: str | tuple[str, ...]) -> str:
    rc, out, err = dmm_cmd(capsys, *argv)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmm: error: "), err
    assert "Traceback" not in err
    for m in (match,) if isinstance(match, str) else match:
        assert m in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def counter_file():
    dmm.files.save_program(counter("src"), "counter")
    return "counter.json"


@pytest.fixture
def small_trace(capsys, counter_file):
    np.save("five.npy", np.arange(5, dtype=np.float32))
    assert dmm_cmd(capsys, "run", counter_file, "--input", "src.out=five.npy", "--out", "small.npz", "-q")[0] == 0
    return "small.npz"


# ------------------------------------------------------------------------------------------ numbers out of range
def test_steps_and_seed_out_of_range(capsys):
    fails(capsys, "run", "duplicate_detector", "--steps", 10**30, match=("--steps", str(10**30)))
    fails(capsys, "run", "duplicate_detector", "--steps", 2**40, match=("--steps", str(2**40)))
    fails(capsys, "run", "duplicate_detector", "--steps", -3, match="--steps")
    fails(capsys, "run", "duplicate_detector", "--steps", 5, "--seed", 10**30, match=("--seed", str(10**30)))
    fails(capsys, "run", "duplicate_detector", "--steps", 5, "--seed", -(10**30), match="--seed")


def test_show_digits_width_and_plot_frames_out_of_range(capsys, small_trace):
    fails(capsys, "show", small_trace, "--digits", -1, match="--digits")
    fails(capsys, "show", small_trace, "--digits", 0, match="--digits")
    fails(capsys, "show", small_trace, "--digits", 10**30, match="--digits")
    fails(capsys, "show", small_trace, "--width", -5, match="--width")
    fails(capsys, "plot", small_trace, "--frames", 10**30, match="--frames")
    assert dmm_cmd(capsys, "show", small_trace, "--digits", 17)[0] == 0


def test_run_refuses_a_trace_larger_than_memory(capsys, counter_file, monkeypatch):
    monkeypatch.setattr("os.sysconf", lambda name: 1024 if name == "SC_PHYS_PAGES" else 4096)  # 4 MiB of memory
    fails(capsys, "run", counter_file, "--steps", 10**7, match=("--steps 10000000", "GiB"))


# ------------------------------------------------------------------------------------------------- --input
def test_input_string_array(capsys, counter_file):
    np.save("s.npy", np.array(["a", "b"]))
    fails(capsys, "run", counter_file, "--input", "src.out=s.npy", match=("--input src.out", "s.npy", "<U1"))
    np.save("c.npy", np.zeros(5, dtype=[("a", "f4"), ("b", "i4")]))
    fails(capsys, "run", counter_file, "--input", "src.out=c.npy", match="c.npy")


def test_input_unknown_stream_lists_the_programs_streams(capsys, counter_file):
    np.save("ok.npy", np.zeros(5))
    fails(capsys, "run", counter_file, "--input", "nope.out=ok.npy", match=("nope.out", "src.out", "cnt.out"))
    fails(capsys, "run", "duplicate_detector", "--input", "nope.out=ok.npy", match=("nope.out", "timer.out"))


def test_malformed_input_files(capsys, counter_file):
    good = Path("g.npy")
    np.save(good, np.zeros((50, 3)))
    data = good.read_bytes()
    cases = {
        "empty.npy": b"",
        "garbage.npy": b"\x00\x01 garbage",
        "truncated.npy": data[:-40],
        "headeronly.npy": data[:20],
        "badheader.npy": data[:10] + b"{'descr': 1, " + data[23:],
    }
    np.savez("two.npz", a=np.zeros(3), b=np.zeros(3))
    for name, content in cases.items():
        Path(name).write_bytes(content)
    # a header declaring far more data than the file holds
    hdr = data.decode("latin1")
    Path("lying.npy").write_bytes(hdr.replace("(50, 3)", "(9999999, 3)").encode("latin1")[: len(data)])
    for name in [*cases, "lying.npy", "two.npz"]:
        fails(capsys, "run", counter_file, "--input", f"src.out={name}", match=("--input src.out", name))
    Path("adir").mkdir()
    fails(capsys, "run", counter_file, "--input", "src.out=adir", match="adir")


# -------------------------------------------------------------------------------------------- malformed files
def test_malformed_program_and_trace_files(capsys, counter_file, small_trace):
    text = Path(counter_file).read_text()
    for i, content in enumerate([text[: len(text) // 2], "", "[]", '{"format": 3}', "\x00\xff", text.replace("dmm", "xyz"),
                                 text.replace('"external"', '"no_such_type"'), text.replace('"src"', '"s r c"', 1)]):
        Path(f"p{i}.json").write_text(content, encoding="latin1")
        fails(capsys, "run", f"p{i}.json", "--steps", 3, match=f"p{i}")
    Path("pdir.json").mkdir()
    fails(capsys, "run", "pdir.json", "--steps", 3, match="pdir")
    trace = Path(small_trace).read_bytes()
    for i, content in enumerate([b"", trace[: len(trace) // 2], trace[:100], b"PK\x03\x04" + b"\x00" * 40, trace[::-1]]):
        Path(f"t{i}.npz").write_bytes(content)
        fails(capsys, "show", f"t{i}.npz", match=f"t{i}.npz")
        fails(capsys, "plot", f"t{i}.npz", match=f"t{i}.npz")
    Path("tdir.npz").mkdir()
    fails(capsys, "show", "tdir.npz", match="tdir.npz")


# ------------------------------------------------------------------------------------------- builder arguments
@pytest.mark.parametrize("arg", ["dim=0", "patterns=-1", "flips=1000000"])
def test_builder_errors_name_the_program_and_argument(capsys, arg):
    fails(capsys, "run", "attention_rewiring", "--arg", arg, "--steps", 3, match=("attention_rewiring", arg))


def test_synthesis_network_needs_a_layer(capsys):
    fails(capsys, "run", "synthesis_network", "--arg", "layers=0", "--steps", 3, match="layers")


# --------------------------------------------------------------------------------------------------- outputs
def test_write_errors_name_the_users_path(capsys, counter_file, small_trace):
    np.save("five.npy", np.arange(5, dtype=np.float32))
    line = fails(capsys, "run", "duplicate_detector", "--steps", 5, "--out", "nowhere/o.npz", match="nowhere/o.npz")
    assert ".tmp" not in line
    Path("adir").mkdir()
    fails(capsys, "run", counter_file, "--input", "src.out=five.npy", "--out", "adir", match="--out adir")
    fails(capsys, "run", counter_file, "--input", "src.out=five.npy", "--save-program", "nowhere/p", match="nowhere/p")
    Path("afile").write_text("")
    fails(capsys, "run", counter_file, "--input", "src.out=five.npy", "--out", "afile/o.npz", match="afile/o.npz")


def test_write_error_while_saving_names_the_users_path(capsys, counter_file, monkeypatch):
    np.save("five.npy", np.arange(5, dtype=np.float32))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", ".o.npz.1234.abcd.tmp")

    monkeypatch.setattr(dmm.files, "save_trace", refuse)
    line = fails(capsys, "run", counter_file, "--input", "src.out=five.npy", "--out", "o.npz", match=("o.npz", "Permission denied"))
    assert ".tmp" not in line


def test_plot_output_mistakes(capsys, small_trace):
    pytest.importorskip("matplotlib")
    fails(capsys, "plot", small_trace, "-o", "x.unknownext", match=("x.unknownext", ".png"))
    Path("adir").mkdir()
    fails(capsys, "plot", small_trace, "-o", "adir", match="adir")
    assert not Path("adir.png").exists()
    fails(capsys, "plot", small_trace, "-o", "noext", match="noext")
    fails(capsys, "plot", small_trace, "-o", "nowhere/x.png", match="nowhere/x.png")


# --------------------------------------------------------------------------------------------------- property
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=6),
    st.sampled_from(["", "-", "1e3", "0x10", " 7 ", "nan", "inf", "1:2", ":", "9" * 40]),
)
STEPS = st.one_of(st.integers(-3, 20).map(str), st.integers(2**31, 2**80).map(str), st.text(max_size=4))
BYTES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda b: b"\x93NUMPY\x01\x00" + b),
    st.binary(max_size=120).map(lambda b: b"PK\x03\x04" + b),
)


def exits_cleanly(capsys, *argv) -> int:
    rc, out, err = dmm_cmd(capsys, *argv)
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dmm: error: "), (argv, err)
    return rc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digits=NUMBER, cycles=st.one_of(NUMBER, st.tuples(NUMBER, NUMBER).map(":".join)), width=NUMBER, limit=NUMBER,
       frames=st.one_of(st.integers(-2, 10).map(str), NUMBER), garbage=BYTES)
def test_show_and_plot_never_exit_1(capsys, small_trace, digits, cycles, width, limit, frames, garbage):
    for opt in ("--digits", "--cycles", "--width", "--limit"):
        value = {"--digits": digits, "--cycles": cycles, "--width": width, "--limit": limit}[opt]
        exits_cleanly(capsys, "show", small_trace, f"{opt}={value}")
    Path("g.npz").write_bytes(garbage)
    exits_cleanly(capsys, "show", "g.npz")
    exits_cleanly(capsys, "plot", small_trace, f"--cycles={cycles}", f"--frames={frames}", "-o", "out.png")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, seed=NUMBER, garbage=BYTES, program=BYTES)
def test_run_never_exits_1(capsys, counter_file, steps, seed, garbage, program):
    exits_cleanly(capsys, "run", "lightweight_oscillator", f"--steps={steps}", f"--seed={seed}", "-q")
    Path("g.npy").write_bytes(garbage)
    exits_cleanly(capsys, "run", counter_file, "--input", "src.out=g.npy", "-q")
    Path("r.json").write_bytes(program)
    Path("r.npz").write_bytes(garbage)
    exits_cleanly(capsys, "run", "r.json", "--steps", "2", "-q")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=NUMBER, delta=NUMBER, dim=st.integers(-3, 24).map(str), flips=st.one_of(st.integers(-3, 10**7).map(str), NUMBER))
def test_program_args_never_exit_1(capsys, edit, delta, dim, flips):
    exits_cleanly(capsys, "run", "live_edit_counter", "--arg", f"edit_cycle={edit}", "--arg", f"delta={delta}", "--steps", "3", "-q")
    exits_cleanly(capsys, "run", "attention_rewiring", "--arg", f"dim={dim}", "--arg", f"flips={flips}", "--steps", "2", "-q")
