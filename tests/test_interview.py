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


def test_state_roundtrip_and_corrupt_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    assert interview.load_state(path)["items"] == {}
    state = interview.load_state(path)
    rate(state, "gan-1", 2)
    interview.save_state(state, path)
    assert interview.load_state(path)["items"]["gan-1"]["seen"] == 1
    path.write_text("{not json")
    assert interview.load_state(path)["items"] == {}


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
