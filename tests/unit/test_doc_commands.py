"""The doc-command extractor and classifier on a planted document (tests/support/doc_commands.py)."""

from __future__ import annotations

from pathlib import Path

from tests.support import aws_only_commands
from tests.support.doc_commands import calehr_invocations, calehr_words, commands, flag_problems

PLANTED = """# Planted

```bash
npx cdk deploy -c stage=staging \\
  -c ehrRoutes='{"a": {"baseUrl": "https://a.example/r4"},
                 "b": {"baseUrl": "https://b.example/r4"}}' --outputs-file out.json   # a comment
# a whole-line comment
.venv/bin/calehr review list --stack "$STACK" --colour
terraform apply
```

```
calehr output-looking text that is not a shell block
```

## Operations (runbook)

| situation | command |
|---|---|
| a row | `calehr reveiw list $T`, then `aws logs tail "$(logs SyncFunctionName)" --since 1h` |

## Elsewhere

| a table | in passing: `calehr review retry` |

Prose names `calehr sync pause --wait`
across a line.
"""


def _planted(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(PLANTED, encoding="utf-8")
    return path


def test_fenced_blocks_join_continuations_and_drop_comments(tmp_path: Path) -> None:
    found = commands([_planted(tmp_path)])
    texts = [c.text for c in found]
    assert texts[0].startswith('npx cdk deploy -c stage=staging -c ehrRoutes=\'{"a"')
    assert texts[0].endswith("--outputs-file out.json") and "comment" not in texts[0]
    assert '"b": {"baseUrl"' in texts[0]  # the quoted value spans lines and stays one word
    assert '.venv/bin/calehr review list --stack "$STACK" --colour' in texts
    assert "terraform apply" in texts
    assert not any("output-looking" in t for t in texts)  # a block without `bash` is output


def test_only_the_runbook_tables_are_run(tmp_path: Path) -> None:
    texts = [c.text for c in commands([_planted(tmp_path)])]
    assert "calehr reveiw list $T" in texts
    assert 'aws logs tail "$(logs SyncFunctionName)" --since 1h' in texts
    assert "calehr review retry" not in texts  # a table elsewhere names commands in passing


def test_the_flag_check_sees_every_calehr_and_catches_planted_mistakes(tmp_path: Path) -> None:
    invocations = {c.text: c for c in calehr_invocations([_planted(tmp_path)])}
    assert "calehr review retry" in invocations and "calehr sync pause --wait" in invocations
    problems = {text: flag_problems(calehr_words(text.replace("$T", "--local"))) for text in invocations}
    listed = '.venv/bin/calehr review list --stack "$STACK" --colour'
    assert problems[listed] == "`calehr review list` has no option --colour"
    assert problems["calehr reveiw list $T"] == "`calehr` has no command 'reveiw'"
    assert problems["calehr sync pause --wait"] == "`calehr sync pause` has no option --wait"
    assert problems["calehr review retry"] is None


def test_a_command_neither_run_nor_listed_is_unclassified(tmp_path: Path) -> None:
    found = {c.text for c in commands([_planted(tmp_path)])}
    assert aws_only_commands.reason_not_run("terraform apply") is None
    assert aws_only_commands.reason_not_run('aws logs tail "$(logs SyncFunctionName)" --since 1h') is not None
    assert aws_only_commands.reason_not_run("aws logs describe-log-groups") is None  # a new AWS call: not listed
    assert "terraform apply" in found


def test_list_entries_match_whole_words() -> None:
    assert aws_only_commands.matches("make test", "make test")
    assert not aws_only_commands.matches("make tests", "make test")
    assert aws_only_commands.matches("VAULT=abc", "VAULT=")
