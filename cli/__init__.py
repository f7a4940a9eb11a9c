"""`calehr`: the Cal EHR Bridge command line for developers and operators.

Installed by `make deps` as `.venv/bin/calehr` (also `python -m cli`). Dev/operator side only: it is
never part of the Lambda layer, and `shared/` and `functions/` never import it.

    cli/app.py        the root command, error handling and exit codes
    cli/commands/     the commands, one module per group (add new ones there)
    cli/target.py     --local / --stack NAME / environment: where the resources are
    cli/output.py     tables, --json, progress bars
    cli/ops.py        review, dlq, sync, audit against the bridge's AWS resources
    cli/doctor.py     EHR readiness checks, per EHR route
    cli/reconcile.py  an on-demand reconciliation run
    cli/local.py      dev, serve, send, appointments (the local stack lives in devstack/)
"""
