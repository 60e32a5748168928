"""genlib.interview: loading, scheduling, the quiz (driven by scripted input), the CLI."""
import io
import json
import os
import subprocess
import sys

import pytest

from genlib import interview
from genlib.interview import rate, schedule


def test_load_bank_filters():
    vae = interview.load_bank(topic="vae")
    assert vae and all(e["topic"] == "vae" for e in vae)
    hard = interview.load_bank(difficulty="hard")
    assert hard and all(e["difficulty"] == "hard" for e in hard)
    both = interview.load_bank(topic="gan", difficulty="medium")
    assert all(e["topic"] == "gan" and e["difficulty"] == "medium" for e in both)
    with pytest.raises(ValueError, match="unknown topic"):
        interview.load_bank(topic="astrology")
    with pytest.raises(ValueError, match="difficulty"):
        interview.load_bank(difficulty="impossible")


def test_load_bank_returns_copies():
    a = interview.load_bank()
    a[0]["question"] = "changed"
    assert interview.load_bank()[0]["question"] != "changed"


def test_get():
    assert interview.get("vae-1")["topic"] == "vae"
    with pytest.raises(KeyError):
        interview.get("vae-999")


# ----------------------------------------------------------------------------- scheduling
def _entries(n=4, topic="vae"):
    return [{"id": f"{topic}-{i}", "topic": topic} for i in range(1, n + 1)]


def test_missed_question_comes_back_first_known_one_later():
    entries = _entries(4)
    state = {"session": 1, "items": {}}
    rate(state, "vae-1", 3)
    rate(state, "vae-2", 1)
    state["session"] = 2
    order = [e["id"] for e in schedule(entries, state)]
    assert order[0] == "vae-2", "missed → due next session, first"
    assert order[1:3] == ["vae-3", "vae-4"], "unseen questions next"
    assert order[-1] == "vae-1", "known → not due yet, last"


def test_boxes_and_intervals():
    state = {"session": 5, "items": {}}
    item = rate(state, "q", 3)
    assert item["box"] == 1 and item["due"] == 5 + interview.INTERVALS[1]
    item = rate(state, "q", 3)
    assert item["box"] == 2
    item = rate(state, "q", 2)
    assert item["box"] == 1, "'partly' demotes to box ≤ 1"
    item = rate(state, "q", 1)
    assert item["box"] == 0 and item["due"] == 6
    for _ in range(10):
        item = rate(state, "q", 3)
    assert item["box"] == len(interview.INTERVALS) - 1
    assert item["seen"] == 14 and len(item["ratings"]) == 5
    with pytest.raises(ValueError):
        rate(state, "q", 4)


def test_due_questions_ordered_weakest_first():
    state = {"session": 10, "items": {"vae-1": {"box": 2, "due": 9, "seen": 3, "ratings": []},
                                     "vae-2": {"box": 0, "due": 10, "seen": 1, "ratings": []}}}
    order = [e["id"] for e in schedule(_entries(2), state)]
    assert order == ["vae-2", "vae-1"]


def test_schedule_mixes_topics():
    entries = _entries(3, "vae") + _entries(3, "gan")
    order = [e["topic"] for e in schedule(entries, {"session": 1, "items": {}})]
    assert order[:4] == ["vae", "gan", "vae", "gan"]


def test_state_roundtrip_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    assert interview.load_state(path)["items"] == {}
    state = interview.load_state(path)
    rate(state, "gan-1", 2)
    interview.save_state(state, path)
    assert interview.load_state(path)["items"]["gan-1"]["seen"] == 1
    path.chmod(0o640)
    before = path.read_bytes()
    rate(state, "gan-2", 3)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(interview.os, "replace", broken_replace)
    with pytest.raises(OSError):
        interview.save_state(state, path)
    assert path.read_bytes() == before, "a failed save leaves the old file whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no temporary file left"
    monkeypatch.undo()
    interview.save_state(state, path)
    assert set(interview.load_state(path)["items"]) == {"gan-1", "gan-2"}
    assert path.stat().st_mode & 0o777 == 0o640, "an existing file keeps its permissions"
    with pytest.raises(OSError):  # no silent mkdir of a mistyped directory
        interview.save_state(state, tmp_path / "missing" / "state.json")


@pytest.mark.parametrize("content,why", [
    (b"{not json", "not valid JSON"),
    (b'{"version": 1, "session": 3, "items": {"vae-1": {"box": 1, "se', "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[]", "expected a JSON object"),
    (b'{"version": 1, "session": "three", "items": {}}', "'session'"),
    (b'{"version": 1, "session": 2}', "'items'"),
    (b'{"version": 1, "session": 2, "items": {"vae-1": {"box": 0, "seen": 1, "ratings": [1]}}}',
     "item 'vae-1'"),
    (b'{"version": 1, "session": 2, "items": {"vae-1": {"box": 9, "seen": 1, "due": 3, "ratings": []}}}',
     "item 'vae-1'"),
    (b'{"version": 2, "session": 2, "items": {}}', "version 2"),
])
def test_load_state_refuses_unreadable_and_leaves_it(tmp_path, content, why):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(interview.UnreadableState, match=why):
        interview.load_state(path)
    assert path.read_bytes() == content


# ----------------------------------------------------------------------------- the quiz loop
def _quiz(entries, path, script, n=3):
    out = io.StringIO()
    result = interview.run_quiz(entries, path, n=n, stdin=io.StringIO(script), stdout=out)
    return result, out.getvalue()


def test_quiz_reveals_and_records(tmp_path):
    path = tmp_path / "q.json"
    vae = interview.load_bank(topic="vae")
    result, text = _quiz(vae, path, "\n1\n\n3\n\n2\n", n=3)
    assert len(result["asked"]) == 3 and sorted(result["ratings"].values()) == [1, 2, 3]
    first = interview.get(result["asked"][0])
    assert first["question"][:30] in text.replace("\n", " ") or first["id"] in text
    assert "Answer:" in text and first["short_answer"].split()[0] in text
    state = json.loads(path.read_text())
    assert state["session"] == 1 and set(state["items"]) == set(result["asked"])
    missed = [q for q, r in result["ratings"].items() if r == 1]
    result2, _ = _quiz(vae, path, "\n3\n", n=1)
    assert result2["asked"] == missed, "the missed question is asked first next session"


def test_quiz_reprompts_on_bad_rating_and_quits(tmp_path):
    path = tmp_path / "q.json"
    gan = interview.load_bank(topic="gan")
    result, text = _quiz(gan, path, "\nfive\n3\nq\n", n=3)
    assert "Please type 1, 2 or 3" in text
    assert list(result["ratings"].values()) == [3] and len(result["asked"]) == 1


def test_quiz_stops_cleanly_at_end_of_input(tmp_path):
    result, text = _quiz(interview.load_bank(topic="speed"), tmp_path / "q.json", "\n", n=3)
    assert result["ratings"] == {} and "Done" in text


def test_quiz_with_no_matching_questions(tmp_path):
    result, text = _quiz([], tmp_path / "q.json", "")
    assert result["asked"] == [] and "No questions" in text


# ----------------------------------------------------------------------------- CLI
def test_cli_print_study_sheet(capsys, tmp_path):
    from genlib.cli import main

    state = tmp_path / "never-written.json"
    assert main(["quiz", "--print", "--topic", "vae", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    vae = interview.load_bank(topic="vae")
    assert out.startswith("# Study sheet: Variational autoencoders")
    for e in vae:
        assert f"## {e['id']} " in out
    assert out.count("Answer:") == len(vae) and "Follow-ups:" in out and "References:" in out
    assert max(len(line) for line in out.splitlines()) <= 100, "wrapped for reading"
    assert not state.exists(), "--print must not touch the quiz state"


def test_cli_print_filters_and_myths(capsys):
    from genlib.cli import main

    main(["quiz", "--print", "--difficulty", "hard", "-n", "2"])
    out = capsys.readouterr().out
    assert out.count("Answer:") == 2 and "hard" in out
    main(["quiz", "--print", "--myths"])
    out = capsys.readouterr().out
    assert "Myth:" in out and "Fact:" in out and "Evidence (" in out


def test_cli_interactive_subprocess(tmp_path):
    state = tmp_path / "state.json"
    env = dict(os.environ, PYTHONPATH=str(interview.ROOT))
    proc = subprocess.run([sys.executable, "-m", "genlib", "quiz", "--topic", "metrics", "-n", "2",
                           "--state", str(state)], input="\n1\n\n3\n", text=True,
                          capture_output=True, timeout=120, cwd=str(interview.ROOT), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] metrics-" in proc.stdout and "[2/2] metrics-" in proc.stdout
    saved = json.loads(state.read_text())
    assert sorted(i["ratings"][-1] for i in saved["items"].values()) == [1, 3]


# ----------------------------------------------------------------------------- chapter helpers
def test_pick_mock():
    bank = interview.load_bank()
    mock = interview.pick_mock(bank, k=5, seed=3)
    assert len({e["topic"] for e in mock}) == 5
    assert any(e["difficulty"] == "hard" for e in mock)
    assert [e["id"] for e in mock] == [e["id"] for e in interview.pick_mock(bank, k=5, seed=3)]
    with pytest.raises(ValueError):
        interview.pick_mock(interview.load_bank(topic="vae"), k=5)


def test_topic_chapter_map():
    m = interview.topic_chapter_map()
    assert set(m) == set(interview.TOPICS)
    assert "11_interview_prep.ipynb" in m["training"]


def test_cpu_seconds_scales_with_work():
    import torch

    x = torch.randn(128, 128)
    one = interview.cpu_seconds(lambda: x @ x)
    ten = interview.cpu_seconds(lambda: [x @ x for _ in range(10)])
    assert ten > 3 * one


def test_mock_interview_is_timed_and_spans_topics(tmp_path):
    ticks = iter([0.0, 50.0, 100.0, 300.0, 400.0, 410.0])  # answers take 50 s, 200 s, 10 s
    out = io.StringIO()
    result = interview.run_quiz(interview.load_bank(), tmp_path / "m.json", n=3, mock=True, seed=1,
                                stdin=io.StringIO("\n3\n\n1\n\n2\n"), stdout=out,
                                clock=lambda: next(ticks), limit_s=120)
    text = out.getvalue()
    assert len({interview.get(q)["topic"] for q in result["asked"]}) == 3
    assert list(result["seconds"].values()) == [50.0, 200.0, 10.0]
    assert "You took 50 s (within time)" in text and "over the 120 s limit" in text
    assert f"over the limit: {result['asked'][1]}" in text


def test_cli_mock_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(interview.ROOT))
    proc = subprocess.run([sys.executable, "-m", "genlib", "quiz", "--mock", "-n", "2", "--state",
                           str(tmp_path / "s.json")], input="\n2\n\n2\n", text=True,
                          capture_output=True, timeout=120, cwd=str(interview.ROOT), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "mock interview" in proc.stdout and "You took" in proc.stdout and "[2/2]" in proc.stdout


# ----------------------------------------------------------------------------- CLI edge cases (ch09-bank §5)
@pytest.mark.parametrize("argv,fragment", [
    (["--myths"], "use it with --print"),
    (["--print", "--myths", "--topic", "vae"], "do not apply"),
    (["--print", "--myths", "-n", "3"], "do not apply"),
    (["--mock", "--print"], "choose one"),
    (["--seconds", "60"], "use it with --mock"),
    (["--mock", "--seconds", "0"], "must be positive"),
    (["-n", "0"], "at least 1"),
    (["--print", "-n", "-2"], "at least 1"),
    (["--mock", "-n", "12"], "at most 9"),
    (["--seed", "3"], "use it with --mock"),
    (["--stats", "--mock"], "only --topic, --difficulty and --state"),
    (["--stats", "-n", "3"], "only --topic, --difficulty and --state"),
    (["--print", "--follow-ups"], "--print already lists them"),
    (["--stats", "--follow-ups"], "only --topic, --difficulty and --state"),
])
def test_cli_refuses_meaningless_combinations(tmp_path, capsys, argv, fragment):
    from genlib.cli import main

    state = tmp_path / "s.json"
    assert main(["quiz", *argv, "--state", str(state)]) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err and captured.out == ""
    assert not state.exists()


def test_cli_mock_n_topics_and_seconds(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    interview._add_quiz_arguments(p)
    args = p.parse_args(["--mock", "-n", "3", "--seconds", "30", "--state", str(tmp_path / "m.json")])
    out = io.StringIO()
    assert interview._run_quiz_cli(args, stdin=io.StringIO("\n3\n\n3\n\n3\n"), stdout=out) == 0
    text = out.getvalue()
    assert "aim for under 30 s" in text and "[3/3]" in text and "[4/" not in text


def test_cli_mock_seed_is_printed_and_repeats_the_mock(tmp_path):
    """learners D: a mock could not be repeated (no --seed); now its seed is printed and --seed
    reproduces the same questions, whatever the progress file says."""
    import re

    code, first, _ = _cli(["--mock", "-n", "4", "--state", str(tmp_path / "a.json")], "\n3\n" * 4)
    assert code == 0
    seed = int(re.search(r"--seed (\d+) asks the same questions again", first).group(1))
    ids = re.findall(r"\[\d/4\] (\S+) ·", first)
    assert len(ids) == 4
    code, again, _ = _cli(["--mock", "-n", "4", "--seed", str(seed), "--state", str(tmp_path / "a.json")],
                          "\n1\n" * 4)
    assert code == 0 and re.findall(r"\[\d/4\] (\S+) ·", again) == ids
    other = {tuple(re.findall(r"\[\d/4\] (\S+) ·", _cli(["--mock", "-n", "4", "--seed", str(s), "--state",
                                                          str(tmp_path / "b.json")], "q\n")[1]))
             for s in range(seed + 1, seed + 6)}
    assert any(o != (ids[0],) for o in other)  # the seed matters: another seed starts elsewhere


def test_cli_stats_reports_progress_and_leaves_it_alone(tmp_path):
    """learners D: no stats view. --stats counts seen, due and weak questions per topic from the
    progress file and never writes it; an unreadable file is a one-line error, left untouched."""
    state = tmp_path / "s.json"
    code, out, _ = _cli(["-n", "3", "--state", str(state)], "\n1\n\n3\n\n2\n")
    assert code == 0
    saved = json.loads(state.read_text())
    ratings = {i: it["ratings"][-1] for i, it in saved["items"].items()}
    before = state.read_bytes()
    code, out, err = _cli(["--stats", "--state", str(state)])
    assert code == 0 and err == "" and state.read_bytes() == before
    assert "Progress after 1 session:" in out
    weak = sorted(i for i, r in ratings.items() if r == 1)
    assert f"Weak questions: {', '.join(weak)}" in out
    bank = interview.load_bank()
    for topic, name in interview.TOPICS.items():
        mine = [e["id"] for e in bank if e["topic"] == topic]
        seen = [i for i in mine if i in ratings]
        due = len(mine) - sum(1 for i in seen if ratings[i] == 3)  # a 3 moves to box 1: due in 2 sessions
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert row.split()[-4:] == [str(len(mine)), str(len(seen)), str(due),
                                    str(sum(1 for i in seen if ratings[i] == 1))], row
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, out, err = _cli(["--stats", "--state", str(bad)])
    assert code == 2 and "not valid JSON" in err and bad.read_text() == "{"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "s.json"]


def test_follow_up_drill_asks_each_follow_up_before_the_deeper_answer(tmp_path):
    """learners D: follow-ups were shown but never asked. With drill=True (--follow-ups) each one is
    put to the learner after the short answer, then the deeper answer (which answers them) follows."""
    e = interview.get("basics-1")
    k = len(e["follow_ups"])
    assert k >= 2
    out = io.StringIO()
    result = interview.run_quiz([e], tmp_path / "d.json", n=1, drill=True, stdout=out,
                                stdin=io.StringIO("\n" + "\n" * k + "2\n"))
    text = out.getvalue()
    assert result["ratings"] == {"basics-1": 2}
    marks = [text.index("Answer:")] + [text.index(f"Follow-up {i}/{k}:") for i in range(1, k + 1)] \
        + [text.index("Deeper:"), text.index("Pitfalls:")]
    assert marks == sorted(marks)
    for f in e["follow_ups"]:
        assert text.index(f) < text.index("Deeper:")
    assert "Follow-ups:" not in text  # asked, so not listed again
    # quitting during the follow-ups rates nothing and writes nothing
    out = io.StringIO()
    result = interview.run_quiz([e], tmp_path / "q.json", n=1, drill=True, stdout=out,
                                stdin=io.StringIO("\n\nq\n"))
    assert result["ratings"] == {} and not (tmp_path / "q.json").exists() and "Deeper:" not in out.getvalue()
    # without the drill the follow-ups are listed after the answer, never asked
    out = io.StringIO()
    interview.run_quiz([e], tmp_path / "p.json", n=1, stdout=out, stdin=io.StringIO("\n3\n"))
    assert "Follow-ups:" in out.getvalue() and "Follow-up 1/" not in out.getvalue()
    code, text, _ = _cli(["--follow-ups", "-n", "1", "--state", str(tmp_path / "c.json")], "\n" * 8 + "3\n")
    assert code == 0 and "Follow-up 1/" in text


def test_key_points_follow_the_answer_and_come_before_the_rating(tmp_path):
    """learners (turn 3): a checklist to grade yourself against, after the answer (and the deeper
    answer, follow-ups, pitfalls, references) and just before the 1/2/3 rating — in the quiz, the
    follow-up drill and the mock; a question without key points is still asked."""
    for kwargs in ({}, {"drill": True}, {"mock": True, "seed": 3}):
        bank = interview.load_bank(topic="gan")
        out = io.StringIO()
        result = interview.run_quiz(bank, tmp_path / f"k{len(kwargs)}.json", n=1, stdout=out,
                                    stdin=io.StringIO("\n" * 6 + "2\n"), **kwargs)
        (qid,) = result["ratings"]
        e = interview.get(qid)
        flat = " ".join(out.getvalue().split())
        where = [flat.index(" ".join(k.split())) for k in e["key_points"]]
        head = flat.index("Key points")
        assert flat.index("Answer:") < flat.index("Deeper:") < flat.index("References:") < head, kwargs
        assert head < min(where) and max(where) < flat.index("Rate yourself"), kwargs
    bare = {k: v for k, v in interview.get("gan-1").items() if k != "key_points"}
    out = io.StringIO()
    result = interview.run_quiz([bare], tmp_path / "bare.json", n=1, stdout=out, stdin=io.StringIO("\n3\n"))
    assert result["ratings"] == {"gan-1": 3} and "Key points" not in out.getvalue()


def test_cli_shows_key_points_and_stats_still_work(tmp_path):
    state = tmp_path / "s.json"
    code, text, _ = _cli(["--topic", "modes", "-n", "1", "--state", str(state)], "\n1\n")
    assert code == 0 and "Key points" in text and "[ ] " in text
    code, text, _ = _cli(["--stats", "--topic", "modes", "--state", str(state)])
    assert code == 0 and "Weak questions: modes-" in text
    code, text, _ = _cli(["--print", "--topic", "modes"])
    assert code == 0 and text.count("Key points") == len(interview.load_bank(topic="modes"))


def test_evidence_speed_claims_times_on_the_process_clock_with_one_thread(monkeypatch):
    """ch09-speed review E7: the docstring says CPU time of this process on one thread, but the KV
    cache and decoding rows used the wall clock. Every timing it asks genlib.speed for must use the
    process clock, with one intra-op thread set at that moment, and the thread count is restored.
    The models, the sampler and the timer are stubbed (nothing is timed here): the test checks what
    the function asks for; the myth test in test_bank runs it for real."""
    import torch

    import genlib.diffusion
    import genlib.flow
    from genlib import speed

    asked = []
    fake_ms = iter([1.0, 100.0, 1.0, 10.0])  # reflow 1 NFE, flow 32 NFE, attention small, large

    def time_fn(fn, *args, clock="wall", **kwargs):
        asked.append(("time_fn", clock, torch.get_num_threads()))
        return {"median_ms": next(fake_ms)}

    def kv_cache_rows(models, lengths, *args, clock="wall", **kwargs):
        asked.append(("kv_cache_rows", clock, torch.get_num_threads()))
        return [{"identical": True, "speedup": 5.0}]

    def decoding_rows(models, batches, steps, *args, clock="wall", **kwargs):
        asked.append(("decoding_rows", clock, torch.get_num_threads()))
        return [{"method": "AR, KV cache", "timing": {"median_ms": 3.0}},
                {"method": "MaskGIT 8 steps", "timing": {"median_ms": 1.0}}]

    monkeypatch.setattr(speed, "time_fn", time_fn)
    monkeypatch.setattr(speed, "kv_cache_rows", kv_cache_rows)
    monkeypatch.setattr(speed, "decoding_rows", decoding_rows)
    monkeypatch.setattr(speed, "token_models", lambda lengths: {})
    monkeypatch.setattr(genlib.diffusion, "load_pretrained", lambda name: None)
    monkeypatch.setattr(genlib.diffusion, "digits_eval", lambda x, y: {"fid": 0.2})
    monkeypatch.setattr(genlib.flow, "sample_euler", lambda model, z, steps, y: z)
    before = torch.get_num_threads()
    interview.evidence_speed_claims(n=10)
    assert [a[0] for a in asked] == ["time_fn", "time_fn", "kv_cache_rows", "decoding_rows",
                                     "time_fn", "time_fn"], asked
    assert {a[1:] for a in asked} == {("process", 1)}, asked
    assert torch.get_num_threads() == before


def test_quiz_does_not_import_torch():
    """`genlib quiz` needs only the standard library: bench (which imports torch) is not loaded."""
    code = ("import sys; from genlib.cli import main; "
            "main(['quiz', '--print', '--topic', 'vae', '-n', '1']); "
            "assert 'torch' not in sys.modules and 'genlib.bench' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'genlib')))")
    env = dict(os.environ, PYTHONPATH=str(interview.ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(interview.ROOT), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "vae-1" in proc.stdout


def test_module_docstring_names_every_quiz_option():
    import argparse

    p = argparse.ArgumentParser()
    interview._add_quiz_arguments(p)
    options = {s for a in p._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    assert options and all(o in interview.__doc__ for o in options), options


# ----------------------------------------------------------------------------- the quiz never loses progress
class _Interrupting(io.StringIO):
    """Scripted stdin whose next read after the script raises KeyboardInterrupt (Ctrl-C)."""

    def readline(self, *args):
        line = super().readline(*args)
        if line == "":
            raise KeyboardInterrupt
        return line


def _cli(argv, script="", stdin=None):
    """Run `genlib quiz ARGV` in-process with scripted stdin; (exit code, stdout, stderr)."""
    import argparse
    from contextlib import redirect_stderr

    p = argparse.ArgumentParser()
    interview._add_quiz_arguments(p)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err):
            code = interview._run_quiz_cli(p.parse_args(argv), stdin=stdin or io.StringIO(script),
                                           stdout=out)
    except KeyboardInterrupt:  # would otherwise stop the whole pytest run
        pytest.fail("Ctrl-C escaped the quiz:\n" + out.getvalue())
    return code, out.getvalue(), err.getvalue()


def _saved(path, *, session, n_items):
    state = json.loads(path.read_text())
    assert interview._state_problem(state) is None
    assert state["session"] == session and len(state["items"]) == n_items, state
    return state


def test_corrupt_state_is_kept_aside_never_overwritten(tmp_path):
    path = tmp_path / "q.json"
    corrupt = b'{"version": 1, "session": 4, "items": {"vae-1": {"box": 2, "seen'  # a torn write
    path.write_bytes(corrupt)
    result, text = _quiz(interview.load_bank(topic="vae"), path, "\n3\n\n2\n", n=2)
    notice = [line for line in text.splitlines() if "Unreadable progress file" in line]
    assert len(notice) == 1 and "not valid JSON" in notice[0] and ".corrupt-" in notice[0]
    aside = sorted(tmp_path.glob("q.json.corrupt-*"))
    assert [str(a) for a in aside] == [result["kept_aside"]] and aside[0].read_bytes() == corrupt
    assert f"kept as {aside[0]}" in text
    _saved(path, session=1, n_items=2)
    # a second unreadable file in the same second gets its own name: nothing is overwritten
    path.write_text("[]")
    stamp = aside[0].name.split(".corrupt-")[1]
    clash = tmp_path / f"q.json.corrupt-{stamp}"
    import time
    original = time.strftime
    time.strftime = lambda fmt, *a: stamp if fmt == "%Y%m%d-%H%M%S" else original(fmt, *a)
    try:
        result, text = _quiz(interview.load_bank(topic="vae"), path, "\n1\n", n=1)
    finally:
        time.strftime = original
    assert clash.read_bytes() == corrupt, "the first kept file is untouched"
    assert result["kept_aside"] == f"{clash}-2" and (tmp_path / f"{clash.name}-2").read_text() == "[]"
    _saved(path, session=1, n_items=1)


def test_unreadable_state_untouched_if_nothing_is_rated(tmp_path):
    path = tmp_path / "q.json"
    path.write_text("{not json")
    for script in ("q\n", "", "\nq\n"):
        result, text = _quiz(interview.load_bank(topic="gan"), path, script, n=2)
        assert "Unreadable progress file" in text and result["kept_aside"] is None
        assert path.read_text() == "{not json" and list(tmp_path.iterdir()) == [path]


def test_unreadable_permissions_are_reported_and_kept(tmp_path, monkeypatch):
    path = tmp_path / "q.json"
    path.write_text('{"version": 1, "session": 1, "items": {}}')
    real = interview.Path.read_text

    def denied(self, *a, **k):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(interview.Path, "read_text", denied)
    result, text = _quiz(interview.load_bank(topic="gan"), path, "\n3\n", n=1)
    assert "cannot be read (Permission denied)" in text and result["kept_aside"]
    monkeypatch.undo()
    _saved(path, session=1, n_items=1)


def test_ctrl_c_stops_cleanly_and_saves(tmp_path, capsys):
    path = tmp_path / "q.json"
    # Ctrl-C at the second question, after one rating
    code, out, err = _cli(["--topic", "vae", "-n", "3", "--state", str(path)],
                          stdin=_Interrupting("\n3\n"))
    assert code == 130 and err == "" and "Traceback" not in out
    assert "Stopped (Ctrl-C)" in out and "Done: 1 rated, progress saved" in out
    _saved(path, session=1, n_items=1)
    # Ctrl-C at the rating prompt of the next session: the earlier rating of it is kept
    code, out, _ = _cli(["--topic", "vae", "-n", "3", "--state", str(path)],
                        stdin=_Interrupting("\n2\n\n"))
    assert code == 130 and "Done: 1 rated" in out
    _saved(path, session=2, n_items=2)
    # Ctrl-C before any rating: the file is not rewritten (the session count stays)
    before = path.read_bytes()
    code, out, _ = _cli(["--topic", "vae", "--state", str(path)], stdin=_Interrupting(""))
    assert code == 130 and "nothing rated, progress file unchanged" in out
    assert path.read_bytes() == before


def test_ctrl_c_during_a_save_is_saved_again(tmp_path, monkeypatch):
    path = tmp_path / "q.json"
    real, calls = interview.save_state, []

    def interrupted_once(state, p):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(state, p)

    monkeypatch.setattr(interview, "save_state", interrupted_once)
    try:
        result, text = _quiz(interview.load_bank(topic="vae"), path, "\n1\n\n3\n", n=2)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during a save escaped the quiz")
    assert result["interrupted"] and len(calls) == 2 and list(result["ratings"]) == result["asked"][:1]
    assert _saved(path, session=1, n_items=1)["items"][result["asked"][0]]["ratings"] == [1]


def test_ctrl_c_real_signal_no_traceback(tmp_path):
    """A real SIGINT to `python -m genlib quiz` at the second question."""
    import select
    import signal
    import time

    state = tmp_path / "state.json"
    env = dict(os.environ, PYTHONPATH=str(interview.ROOT))
    # a test run started in the background (`make test &`, nohup, some CI runners) inherits SIGINT *ignored*,
    # and Python then installs no KeyboardInterrupt handler: the quiz would never see the signal. A terminal's
    # Ctrl-C reaches a foreground process with the default disposition, so restore it in the child.
    proc = subprocess.Popen([sys.executable, "-m", "genlib", "quiz", "--topic", "gan", "-n", "3",
                             "--state", str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(interview.ROOT), env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.stdin.write(b"\n2\n")
    proc.stdin.flush()
    seen, deadline = b"", time.monotonic() + 60
    while b"[2/3]" not in seen or not seen.rstrip().endswith(b"(Enter reveals the answer)"):
        assert time.monotonic() < deadline, seen.decode()
        if select.select([proc.stdout], [], [], 1)[0]:
            seen += os.read(proc.stdout.fileno(), 65536)
    proc.send_signal(signal.SIGINT)
    # wait with stdin still open, so only the signal can end the quiz: communicate() closes stdin at once,
    # and on a loaded machine that end-of-input could reach the quiz before the signal (a clean-clone run
    # once ended with "Done", exit 0, no "Stopped")
    proc.wait(timeout=60)
    out, err = proc.communicate(timeout=60)
    out = (seen + out).decode()
    assert proc.returncode == 130, (out, err)
    assert b"Traceback" not in err and "Stopped (Ctrl-C)" in out
    _saved(state, session=1, n_items=1)


def test_end_of_input_saves_what_was_rated(tmp_path):
    path = tmp_path / "q.json"
    result, text = _quiz(interview.load_bank(topic="vae"), path, "\n3\n\n", n=3)
    assert list(result["ratings"].values()) == [3] and "Done: 1 rated" in text
    _saved(path, session=1, n_items=1)


@pytest.mark.parametrize("make,fragment", [
    (lambda d: d, "is a directory"),
    (lambda d: d / "missing" / "q.json", "does not exist"),
    (lambda d: [(d / "file").write_text("x"), d / "file" / "q.json"][1], "is not a directory"),
])
def test_bad_state_path_is_one_line_before_the_first_question(tmp_path, make, fragment):
    code, out, err = _cli(["--topic", "vae", "--state", str(make(tmp_path))], "\n3\n")
    assert code == 2 and err.count("\n") == 1 and err.startswith("genlib quiz: --state ")
    assert fragment in err and "[1/" not in out and "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_state_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block forever: run in a subprocess with a time limit
    env = dict(os.environ, PYTHONPATH=str(interview.ROOT))
    proc = subprocess.run([sys.executable, "-m", "genlib", "quiz", "--state", str(fifo)],
                          input="\n3\n", text=True, capture_output=True, timeout=120,
                          cwd=str(interview.ROOT), env=env)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and "[1/" not in proc.stdout


def test_unwritable_state_directory_is_refused(tmp_path, monkeypatch):
    # tests may run as root, where chmod cannot make a directory unwritable: refuse the probe instead
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(interview.tempfile, "mkstemp", refuse)
    code, out, err = _cli(["--state", str(tmp_path / "q.json")], "\n3\n")
    assert code == 2
    assert err == (f"genlib quiz: --state {tmp_path / 'q.json'}: cannot write in {tmp_path} "
                   "(Permission denied)\n")
    assert "[1/" not in out


def test_save_failure_mid_quiz_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "q.json"

    def full(state, p):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(interview, "save_state", full)
    code, out, err = _cli(["--topic", "vae", "--state", str(path)], "\n3\n")
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert "Traceback" not in err


def test_more_questions_than_exist_says_so(tmp_path, capsys):
    n_speed = len(interview.load_bank(topic="speed"))
    code, out, _ = _cli(["--topic", "speed", "-n", "100000", "--state", str(tmp_path / "q.json")], "q\n")
    assert code == 0 and f"Only {n_speed} questions match these filters" in out and "not 100000" in out
    assert f"[1/{n_speed}]" in out
    code, out, _ = _cli(["--mock", "--topic", "speed", "--state", str(tmp_path / "q.json")], "q\n")
    assert "only 1 topic matches these filters" in out and "1 question, not 5" in out and "[1/1]" in out
    code, out, err = _cli(["--print", "--topic", "speed", "-n", "100000"])
    assert code == 0 and f"only {n_speed} questions match" in err and out.count("Answer:") == n_speed
    code, out, _ = _cli(["--topic", "speed", "-n", "2", "--state", str(tmp_path / "q.json")], "q\n")
    assert "match these filters" not in out, "no note when there are enough"


def test_quitting_before_answering_changes_nothing(tmp_path):
    path = tmp_path / "q.json"
    for script in ("q\n", "", "\nq\n", "\n\n"):  # q at the question, EOF, q at the rating, EOF there
        result, text = _quiz(interview.load_bank(topic="gan"), path, script, n=2)
        assert result["ratings"] == {} and not path.exists(), script
        assert "nothing rated, nothing saved" in text
    _quiz(interview.load_bank(topic="gan"), path, "\n1\n", n=1)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    for script in ("q\n", "", "\nq\n"):
        result, text = _quiz(interview.load_bank(topic="gan"), path, script, n=2)
        assert "session 2," in text, "the session counter is not advanced on disk"
        assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
        assert "nothing rated, progress file unchanged" in text


def test_pitfalls_and_references_follow_the_answer(tmp_path):
    result, text = _quiz(interview.load_bank(topic="vae"), tmp_path / "q.json", "\n2\n", n=1)
    e = interview.get(result["asked"][0])
    flat = " ".join(text.split())
    answer = flat.index("Answer:")
    assert answer < flat.index("Pitfalls:") < flat.index("References:")
    assert " ".join(e["pitfalls"][0].split()) in flat
    assert interview.format_reference(e["references"][0]) in flat
    if e["links"]["notebook"]:
        assert "notebook notebooks/" in flat and "solutions/" not in flat
    assert flat.index("References:") < flat.index("Rate yourself")


def test_summary_lists_every_question_due_next_session(tmp_path):
    result, text = _quiz(interview.load_bank(topic="vae"), tmp_path / "q.json", "\n1\n\n2\n\n3\n", n=3)
    missed, partly, known = result["asked"]
    assert f"back next session: {missed}, {partly}" in text, "a new question rated 2 is due next session too"
    assert known not in text.split("back next session:")[1]


def test_learner_links_point_to_notebooks():
    assert interview.learner_notebook("solutions/05_vae.ipynb#x") == "notebooks/05_vae.ipynb#x"
    assert interview.learner_notebook("solutions/99_none.ipynb") == "solutions/99_none.ipynb"
