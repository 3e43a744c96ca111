"""Text from users and the model is drawn as text, never read as markup."""
import json

from charts.distributions import next_token_bars
from ui.text import escape_markdown


def test_plotly_labels_escape_html_like_tags():
    fig = next_token_bars(["<b>bold</b>", "<br>", "a&b"], [0.5, 0.3, 0.2], [1, 2, 3], [0.0, -0.5, -0.9])
    labels = json.loads(fig.to_json())["data"][0]["y"]
    assert labels[0].startswith("&lt;b&gt;bold&lt;/b&gt;")
    assert labels[1].startswith("&lt;br&gt;") and labels[2].startswith("a&amp;b")
    assert len(set(labels)) == 3  # equal labels would be merged by plotly: each row stays distinct


def test_markdown_specials_are_escaped():
    assert escape_markdown("**x** :red[y] $z$") == r"\*\*x\*\* \:red\[y\] \$z\$"
    assert escape_markdown("plain words") == "plain words"
