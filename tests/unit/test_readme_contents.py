"""The README's contents list (issue 27 item 11) stays true: every `##`/`###` heading is listed, in order, and each
link's anchor is the one GitHub gives that heading."""

from __future__ import annotations

import re

from tests.helpers import REPO


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_the_contents_list_names_every_heading_in_order_with_its_anchor():
    text = (REPO / "README.md").read_text()
    contents, _, body = text.partition("**Contents**\n")
    assert body, "README.md has no **Contents** list"
    listed = re.findall(r"^ *- \[(.+?)\]\(#([^)]+)\)$", body.split("\n\n## ", 1)[0].strip("\n"), re.M)
    headings = re.findall(r"^#{2,3} (.+)$", body, re.M)
    assert [title for title, _ in listed] == headings, "update the README's contents list to its headings"
    for title, anchor in listed:
        assert anchor == _anchor(title), (title, anchor)
