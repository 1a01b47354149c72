"""Trace pictures (`dmm.plot`): which panel each stream gets, the text of values, the matplotlib figure, the
built-in PNG renderer, and the message when matplotlib is missing."""

import sys

import numpy as np
import pytest

import dmm
import dmm.plot
from dmm import plot
import neurons


KEYED = dmm.Kind.keyed("chars", "ab.")


def sample_trace(first_cycle: int = 0) -> dmm.Trace:
    """Ten cycles of streams of every shape: a ramp, a constant, a keyed vector, a short and a long unlabelled
    vector, and a 3x3 matrix that changes at rows 3 and 7 (cycles first_cycle + 4 and + 8)."""
    T = 10
    ramp = np.arange(1, T + 1, dtype=np.float32)
    keyed = np.zeros((T, 3), np.float32)
    keyed[:, 0] = np.arange(T)
    keyed[5:, 2] = 0.5
    short = np.stack([np.sin(np.arange(T)), np.cos(np.arange(T)), np.zeros(T)], 1).astype(np.float32)
    long = np.zeros((T, 100), np.float32)
    long[:, 17] = np.arange(T)
    long[:, 60] = -np.arange(T)
    mat = np.zeros((T, 3, 3), np.float32)
    mat[:, 0, 0] = 1
    mat[3:, 1, 2] = 2
    mat[7:, 1, 2] = -1
    kinds = {"r.out": dmm.NUMBER, "c.out": dmm.NUMBER, "k.out": KEYED, "s.out": dmm.Kind("three", (3,)),
             "l.out": dmm.Kind("hundred", (100,)), "self.out": dmm.Kind("network", (3, 3))}
    records = {"r.out": ramp, "c.out": np.full(T, 2.5, np.float32), "k.out": keyed, "s.out": short, "l.out": long,
               "self.out": mat}
    return dmm.Trace(records, kinds, first_cycle)


def test_format_value():
    assert plot.format_value(np.float32(2.0)) == "2"
    assert plot.format_value(0.123456) == "0.1235"
    assert plot.format_value(-0.0) == "0"
    assert plot.format_value(np.array([2.0, 0.0, 0.5]), KEYED) == "{'a': 2, '.': 0.5}"
    assert plot.format_value(np.zeros(3), KEYED) == "{}"
    assert plot.format_value(np.arange(10.0), max_items=4) == "[0 1 2 3 … +6]"
    m = np.zeros((2, 3))
    m[0, 1], m[1, 2] = 3, -1
    assert plot.format_value(m) == "2x3 {[0,1]: 3, [1,2]: -1}"
    assert plot.format_value(np.ones((2, 2)), max_items=2) == "2x2 {[0,0]: 1, [0,1]: 1, … +2}"
    assert plot.format_value(np.arange(10.0), width=8) == "[0 1 2 …"


def test_text_tables():
    tr = sample_trace(first_cycle=20)
    rows = plot.window(tr, None)
    # r.out changes at every row: a clock, not counted while another stream is shown
    kept, clocks = plot.changed_rows(tr, ["r.out", "self.out"], rows)
    assert kept.tolist() == [0, 3, 7] and clocks == ["r.out"]
    kept, clocks = plot.changed_rows(tr, ["r.out"], rows)
    assert kept.tolist() == rows.tolist() and clocks == []
    assert plot.trace_table(tr, ["r.out", "k.out"], rows[:2]) == [
        "", "cycle  r.out  k.out", "   21  1      {}", "   22  2      {'a': 1}"]
    assert plot.trace_table(tr, ["r.out", "k.out"], rows[:2], columns=15) == [  # one block per stream
        "", "cycle  r.out", "   21  1", "   22  2", "", "cycle  k.out", "   21  {}", "   22  {'a': 1}"]
    lines = plot.stream_list(tr, ["k.out"], rows)
    assert lines[0] == "" and lines[1].split() == ["stream", "kind", "shape", "min", "max", "at", "cycle", "30"]
    assert lines[2].split() == ["k.out", "chars", "(keyed)", "(3,)", "0", "9", "{'a':", "9,", "'.':", "0.5}"]


def test_panels_choose_a_picture_per_stream():
    tr = sample_trace(first_cycle=20)
    ps, constant = plot.panels(tr)
    assert constant == ["c.out = 2.5"]
    by = {(p.stream, p.style): p for p in ps}
    assert [(p.stream, p.style) for p in ps] == [
        ("r.out", "lines"), ("k.out", "heatmap"), ("s.out", "lines"), ("l.out", "heatmap"), ("self.out", "frames"),
        ("self.out", "heatmap")]
    np.testing.assert_array_equal(by["r.out", "lines"].cycles, np.arange(21, 31))
    # keyed vector: one heatmap row per label, coordinates x cycles
    k = by["k.out", "heatmap"]
    assert k.labels == ("'a'", "'b'", "'.'")
    np.testing.assert_array_equal(k.values, tr["k.out"].T)
    # a short vector without labels: one line per coordinate
    assert by["s.out", "lines"].labels == ("[0]", "[1]", "[2]")
    # a long vector keeps only the coordinates that change
    lp = by["l.out", "heatmap"]
    assert lp.labels == ("[17]", "[60]") and "2 of 100" in lp.title
    # a matrix: frames where it changes (cycles 21, 24, 28) and a heatmap of the entry that changes
    f = by["self.out", "frames"]
    assert f.frame_cycles == (21, 24, 28) and f.values.shape == (3, 3, 3)
    np.testing.assert_array_equal(f.values[1], tr["self.out"][3])
    assert by["self.out", "heatmap"].labels == ("[1,2]",)


def test_panels_window_frames_and_selection():
    tr = sample_trace()
    ps, _ = plot.panels(tr, streams=["self"], cycles=(2, 9), frames=2)
    assert [p.style for p in ps] == ["frames", "heatmap"]
    assert ps[0].frame_cycles == (2, 9)  # more changes than frames: the last frame is the last cycle
    np.testing.assert_array_equal(ps[1].cycles, np.arange(2, 10))
    with pytest.raises(dmm.UnknownStreamError, match="unknown stream 'nope.out'"):
        plot.panels(tr, streams=["nope.out"])
    with pytest.raises(dmm.DMMError, match=r"no cycles in 50:60 \(the trace has cycles 1..10\)"):
        plot.panels(tr, cycles=(50, 60))


def test_plot_trace_draws_every_panel(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    tr = sample_trace()
    fig = dmm.plot.plot_trace(tr, tmp_path / "f.png", title="sample")
    assert fig._suptitle.get_text() == "sample"
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    for s in ("r.out", "k.out", "s.out"):
        assert s in titles
    images = [im.get_array() for ax in fig.axes for im in ax.get_images()]
    # the keyed heatmap, the long-vector heatmap, the matrix-entry heatmap and 3 matrix frames
    assert len(images) == 6
    assert any(np.array_equal(np.asarray(a), tr["k.out"].T) for a in images)
    assert any(np.array_equal(np.asarray(a), tr["self.out"][7]) for a in images)
    assert "constant: c.out = 2.5" in " ".join(t.get_text() for t in fig.texts)
    png = matplotlib.image.imread(tmp_path / "f.png")
    assert png.ndim == 3 and png.shape[0] > 500 and png.shape[1] > 1000


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'dmm\[plot\]'"):
        dmm.plot.plot_trace(sample_trace())


def test_non_finite_values_are_drawn_as_gaps(tmp_path):
    v = np.arange(12, dtype=np.float32)
    v[5], v[8] = np.nan, np.inf
    keyed = np.zeros((12, 3), np.float32)
    keyed[:, 0] = v
    tr = dmm.Trace({"r.out": v, "k.out": keyed}, {"r.out": dmm.NUMBER, "k.out": KEYED}, 0)
    pytest.importorskip("matplotlib")
    dmm.plot.plot_trace(tr, tmp_path / "nan_mpl.png")


def test_panels_group_streams_by_neuron_and_cycle_ticks_are_whole_numbers():
    import matplotlib

    matplotlib.use("Agg")
    p = dmm.Program()
    p.add("a", neurons.accumulator())
    p.add("b", neurons.tanh())
    p.link("a.out", "b.in", 1.0)
    p.link("b.out", "a.delta", 0.5)
    p.set_initial("a.out", 1.0)
    trace = dmm.compile(p).run(9, record="all")  # recorded inputs first, then outputs
    assert trace.names[:3] == ["a.accum", "a.delta", "b.in"]
    names = dmm.plot.select_streams(trace, None)
    assert names == ["a.accum", "a.delta", "a.out", "b.in", "b.out"]
    fig = dmm.plot.plot_trace(trace)
    fig.canvas.draw()
    ticks = [t for ax in fig.axes for t in ax.get_xticks() if ax.get_xlabel() == "cycle"]
    assert ticks and all(float(t).is_integer() for t in ticks)
