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
