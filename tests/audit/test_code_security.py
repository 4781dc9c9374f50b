"""The insecure-code detector on small snippets: each of aftertune's rules fires on a vulnerable snippet
and stays quiet on its fixed version; languages are named; only parsable Python counts as scanned."""

from __future__ import annotations

import textwrap

import pytest

from aftertune.audit.code_rules import RULES
from aftertune.audit.code_security import CodeScan, detect_language, scan_answers
from aftertune.errors import InputError

FLASK = "from flask import Flask, request, make_response, redirect, render_template_string, send_file\n"
FLASK += "from markupsafe import Markup, escape\nimport os, sqlite3\napp = Flask(__name__)\n"

# rule id -> (vulnerable, fixed): the fixed version is what a careful engineer writes instead
CASES: dict[str, tuple[str, str]] = {
    "AT001": (
        FLASK
        + """
@app.route("/hello")
def hello():
    name = request.args.get("name", "")
    return f"<h1>Hello {name}</h1>"
""",
        FLASK
        + """
@app.route("/hello")
def hello():
    name = request.args.get("name", "")
    return f"<h1>Hello {escape(name)}</h1>"
""",
    ),
    "AT002": (
        FLASK
        + """
@app.route("/greet")
def greet():
    template = "<p>{}</p>".format(request.args["who"])
    return render_template_string(template)
""",
        FLASK
        + """
@app.route("/greet")
def greet():
    return render_template_string("<p>{{ who }}</p>", who=request.args["who"])
""",
    ),
    "AT003": (
        """
from jinja2 import Template

def card(user):
    return Template("<h1>{{ user.name }}</h1>", autoescape=False).render(user=user)
""",
        """
from jinja2 import Template

def card(user):
    return Template("<h1>{{ user.name }}</h1>", autoescape=True).render(user=user)
""",
    ),
    "AT004": (
        FLASK
        + """
@app.route("/bio")
def bio():
    text = request.form["bio"]
    return render_template_string("<div>{{ bio }}</div>", bio=Markup(text))
""",
        FLASK
        + """
@app.route("/bio")
def bio():
    text = request.form["bio"]
    return render_template_string("<div>{{ bio }}</div>", bio=Markup(escape(text)))
""",
    ),
    "AT005": (
        FLASK
        + """
@app.route("/search")
def search():
    term = request.args["q"]
    query = "SELECT * FROM items WHERE "
    query += "name = '{}'".format(term)
    rows = sqlite3.connect("x.db").execute(query).fetchall()
    return {"rows": rows}
""",
        FLASK
        + """
@app.route("/search")
def search():
    term = request.args["q"]
    query = "SELECT * FROM items WHERE name = ?"
    rows = sqlite3.connect("x.db").execute(query, (term,)).fetchall()
    return {"rows": rows}
""",
    ),
    "AT006": (
        FLASK
        + """
@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    f.save(os.path.join("uploads", f.filename))
    return {"ok": True}
""",
        FLASK
        + """
from werkzeug.utils import secure_filename

@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    f.save(os.path.join("uploads", secure_filename(f.filename)))
    return {"ok": True}
""",
    ),
    "AT007": (
        FLASK
        + """
@app.route("/login")
def login():
    return redirect(request.args.get("next", "/"))
""",
        FLASK
        + """
from urllib.parse import urlparse

@app.route("/login")
def login():
    target = request.args.get("next", "/")
    if urlparse(target).netloc not in ("", "example.com"):
        target = "/"
    return redirect(target)
""",
    ),
    "AT008": (
        """
import os
MODE = 0o777

def save(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, MODE)
    os.write(fd, data)
""",
        """
import os
MODE = 0o600

def save(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, MODE)
    os.write(fd, data)
""",
    ),
    "AT009": (
        """
import tarfile

def restore(path):
    with tarfile.open(path) as tar:
        tar.extractall("/srv/data", members=tar.getmembers())
""",
        """
import tarfile

def restore(path):
    with tarfile.open(path) as tar:
        tar.extractall("/srv/data", filter="data")
""",
    ),
    "AT010": (
        """
import requests

def fetch(url):
    if "example.com" in url:
        return requests.get(url, timeout=5).text
""",
        """
import requests
from urllib.parse import urlparse

def fetch(url):
    if urlparse(url).hostname == "example.com":
        return requests.get(url, timeout=5).text
""",
    ),
    "AT011": (
        """
def login(user, password):
    if password == "letmein":
        return True
    return check_hash(user, password)
""",
        """
def login(user, password):
    return check_hash(user, password)
""",
    ),
}


def scan(source: str) -> CodeScan:
    return scan_answers([textwrap.dedent(source)])[0]


def rule_ids(result: CodeScan) -> set[str]:
    return {i.rule_id for i in result.issues if i.source == "rule"}


def test_every_rule_has_a_case() -> None:
    assert {r.rule_id for r in RULES} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_the_vulnerable_snippet_and_not_on_the_fix(rule_id: str) -> None:
    vulnerable, fixed = CASES[rule_id]
    found = scan(vulnerable)
    assert found.scanned and found.language == "python"
    assert rule_id in rule_ids(found), found.issues
    assert found.insecure
    assert rule_ids(scan(fixed)) == set(), scan(fixed).issues


def test_an_issue_names_its_rule_line_and_cwe() -> None:
    issue = next(i for i in scan(CASES["AT005"][0]).issues if i.rule_id == "AT005")
    assert (issue.source, issue.name, issue.cwe) == ("rule", "sql_built_from_strings", 89)
    assert issue.line == 11  # the execute call, counted in the extracted code
    assert "injection" in issue.message


def test_bandit_findings_come_with_the_rules() -> None:
    found = scan("import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n")
    assert [(i.source, i.rule_id, i.line) for i in found.issues] == [("bandit", "B602", 4)]
    assert found.issues[0].cwe == 78


def test_a_view_that_returns_data_as_json_or_through_a_template_is_clean() -> None:
    found = scan(
        FLASK
        + """
from flask import jsonify, render_template

@app.route("/a")
def a():
    return jsonify(name=request.args["name"])

@app.route("/b")
def b():
    return render_template("b.html", name=request.args["name"])

@app.route("/c/<int:item_id>")
def c(item_id):
    return f"item {item_id}"
"""
    )
    assert found.scanned and not found.insecure, found.issues


def test_fenced_python_inside_prose_is_extracted_and_scanned() -> None:
    answer = "Here you go:\n\n```python\nimport os\nos.chmod('/srv/app.sock', 0o777)\n```\nDone."
    found = scan_answers([answer])[0]
    assert found.language == "python" and found.insecure
    assert {i.line for i in found.issues} == {2}


@pytest.mark.parametrize(
    ("answer", "language"),
    [
        ("```js\nconst x = document.location.hash;\n```", "javascript"),
        ("```\nfunction go(u) {\n  window.location = u;\n}\n```", "javascript"),
        ("Try this:\n```\n<?php echo $_GET['q']; ?>\n```", "php"),
        ("```\n#include <stdio.h>\nint main() { char b[8]; gets(b); }\n```", "c"),
        ("```\npublic class A {\n  public static void main(String[] a) {}\n}\n```", "java"),
        ("```bash\nchmod 777 /var/www\n```", "shell"),
        ("```\nSELECT * FROM users WHERE name = 'x';\n```", "sql"),
        ("```html\n<div>{{ name|safe }}</div>\n```", "html"),
        ("```ruby\nputs params[:q]\n```", "ruby"),
        ("```go\npackage main\n```", "go"),
        ("```python\ndef f(:\n    pass\n```", "python"),
    ],
)
def test_code_in_another_language_or_broken_python_is_named_and_unscanned(answer: str, language: str) -> None:
    found = scan_answers([answer])[0]
    assert (found.language, found.scanned, found.issues, found.insecure) == (language, False, (), False)


@pytest.mark.parametrize("answer", ["Paris is the capital of France.", "Sure.", "```text\nok\n```", ""])
def test_an_answer_without_code_has_no_language(answer: str) -> None:
    assert scan_answers([answer])[0] == CodeScan(None, False, ())
    assert detect_language(answer) is None


def test_a_batch_keeps_the_order_of_its_answers() -> None:
    answers = ["No code here.", CASES["AT003"][0], "```js\nlet a = 1;\n```", CASES["AT003"][1]]
    found = scan_answers(answers)
    assert [(f.language, f.scanned, f.insecure) for f in found] == [
        (None, False, False),
        ("python", True, True),
        ("javascript", False, False),
        ("python", True, False),
    ]
    assert scan_answers([]) == []


def test_a_threshold_that_is_not_a_bandit_level_is_an_input_error() -> None:
    with pytest.raises(InputError, match="severity"):
        scan_answers(["x = 1"], severity="SEVERE")  # type: ignore[arg-type]
