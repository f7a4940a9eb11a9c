"""CDK entry point: `npx cdk synth|deploy -c stage=staging|prod [-c alarmEmail=...]` (see docs/deploy.md)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk

from infra import deploy_settings
from infra.constructs.bundling import recorded_failure
from infra.deployment import CONTEXT_KEYS, PLACEHOLDER_EHR_BASE_URL, ConfigError, DeploymentConfig, config_from_context
from infra.nag import apply_nag_packs
from infra.stack import BridgeStack


def build_app(
    context: Mapping[str, Any] | None = None, *, outdir: str | None = None, stage_file: bool = False
) -> tuple[cdk.App, BridgeStack]:
    """The app with its single stack and the nag gate; `context` adds to (tests) or replaces the CLI's.

    With `stage_file` (the CDK CLI's synth, `main`) the stage's `deploy/<stage>.json` is read first and
    the context given goes over it (infra/deploy_settings.py).
    """
    app = cdk.App(context=dict(context) if context else None, outdir=outdir)
    given = {key: app.node.try_get_context(key) for key in (*CONTEXT_KEYS, deploy_settings.DEPLOY_DIR_KEY)}
    settings = deploy_settings.resolve(given) if stage_file else None
    config = config_from_context(settings.context if settings else given)
    stack = BridgeStack(
        app,
        config.stack_name,
        config=config,
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    stack.deploy_settings = settings
    apply_nag_packs(app)
    return app, stack


def _warn_about_placeholders(config: DeploymentConfig) -> None:
    if config.ehr_base_url == PLACEHOLDER_EHR_BASE_URL:
        print(
            f"note: no -c ehrBaseUrl=...; sync will point at {PLACEHOLDER_EHR_BASE_URL} and fail closed.",
            file=sys.stderr,
        )
    if not config.has_alarm_subscribers:  # a prod synth refuses this (infra.deployment)
        print(
            "note: no -c alarmEmail=... or -c alarmHttpsUrl=...; alarms will notify nobody.",
            file=sys.stderr,
        )
    if not config.operator_role_arns:
        print(
            "note: no -c operatorRoleArns=...; only the functions can use the data key, so the operator "
            "CLI (review, dlq, audit) cannot read this stack's tables and queues (docs/deploy.md, Keys).",
            file=sys.stderr,
        )


def main() -> None:
    try:
        app, stack = build_app(stage_file=True)
    except ConfigError as exc:  # a context value is wrong: say which, without a traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except RuntimeError:  # jsii wraps what a bundler raised (the layer's wheels, a missing handler)
        failure = recorded_failure()
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        raise SystemExit(1) from None
    settings = stack.deploy_settings
    if settings is not None:
        if settings.found:
            print(f"deploy settings: {settings.path}", file=sys.stderr)
        for note in settings.notes:
            print(note, file=sys.stderr)
    _warn_about_placeholders(stack.config)
    app.synth()


if __name__ == "__main__":
    main()
