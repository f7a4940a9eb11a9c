"""The command groups of `calehr`; `cli.app` registers every module listed in `COMMAND_MODULES`.

To add a command: write a function in one of these modules (or a new module with `register(app)`),
decorate it with `@app.command()` inside `register`, give it `--json` (`cli.output.JsonOpt`) and, if it
uses AWS resources, the target options (`cli.target`); build plain data, print it through `Output`,
raise `CliError`/`UsageError` for refusals. `tests/unit/cli/test_cli.py` checks that every command has
`--help` with an example and `--json`.
"""

COMMAND_MODULES = (
    "cli.commands.local",
    "cli.commands.config",
    "cli.commands.doctor",
    "cli.commands.hl7",
    "cli.commands.ops",
    "cli.commands.reconcile",
    "cli.commands.verify",
    "cli.commands.console",
    "cli.commands.availability",
)
