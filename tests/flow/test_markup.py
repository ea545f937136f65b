"""User-written text that looks like Rich markup (`[/bold]`, `[red]`) is printed as written by every command that
shows it: reasons in the history, inputs and labels in predict, names in errors (issue 27 item 1: `tlops predict
"close [/bold] tag"` crashed with MarkupError, and one promote reason broke every later `tlops history`)."""

from __future__ import annotations

import os


from tests.cli import cli

WIDE = {**os.environ, "COLUMNS": "250"}  # table cells on one line, so the text can be found whole


def test_markup_looking_text_is_printed_as_written(zoo, tmp_path):
    uri = zoo.text.copy_store(tmp_path)
    promoted = cli("promote", "tiny-text", "3", "--reason", "see [/ops] ticket", "--tracking-uri", uri, env=WIDE)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    history = cli("history", "tiny-text", "--tracking-uri", uri, env=WIDE)
    assert history.returncode == 0 and "see [/ops] ticket" in history.stdout, (history.stdout[-2000:], history.stderr[-2000:])
    predicted = cli("predict", zoo.text.model_uri(), "close [/bold] tag [red]", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0 and "close [/bold] tag [red]" in predicted.stdout, predicted.stderr[-2000:]
    unknown = cli("history", "no[/b]pe", "--tracking-uri", uri, env=WIDE)
    assert unknown.returncode == 1 and "'no[/b]pe' is not a model name MLflow accepts" in unknown.stderr, unknown.stderr[-2000:]
    unknown = cli("history", "no[b]pe", "--tracking-uri", uri, env=WIDE)
    assert unknown.returncode == 1 and "unknown model 'no[b]pe'" in unknown.stderr, unknown.stderr[-2000:]
    assert "Traceback" not in history.stderr + predicted.stderr + unknown.stderr


def test_init_prints_a_markup_looking_folder_and_label_as_written(tmp_path):
    """`tlops init` crashed with MarkupError on a label such as `[/b]` (its 'smallest class' line) and dropped `[b]` from
    a folder's name."""
    data = tmp_path / "data [b]"
    data.mkdir()
    (data / "train.csv").write_text("text,label\n" + "".join(f"a cat number {i},[/b]\nsoup number {i},food\n" for i in range(6)))
    (data / "test.csv").write_text("text,label\na kitten,[/b]\nhot soup,food\n")
    out = cli("init", str(data), "--out", str(tmp_path / "c [red].yaml"), env=WIDE)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    for written in (f"{data}: text, 2 classes", "smallest class '[/b]'", f"wrote {tmp_path / 'c [red].yaml'} from starter"):
        assert written in out.stdout, (written, out.stdout)


def test_evaluate_prints_a_markup_looking_label_as_written(zoo, tmp_path):
    """A true label the model does not know, written like markup, in evaluate's per-class table and its warning line."""
    csv = tmp_path / "labelled [b].csv"
    csv.write_text("text,label\na small dog that barks at the moon,animal\na sweet cake baked with the river,[/b]\n")
    out = cli("evaluate", zoo.text.model_uri(), "--data", str(csv), "--tracking-uri", zoo.text.uri, env=WIDE)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "labels the model does not know (always wrong): [/b]" in out.stdout and f"on {csv} (2 rows)" in out.stdout, out.stdout
    assert any(line.split("│")[1].strip() == "[/b]" for line in out.stdout.splitlines() if line.count("│") > 2), out.stdout
