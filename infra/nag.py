"""The compliance gate: cdk-nag's HIPAA Security and AWS Solutions packs as CDK validation plugins.

With the plugins registered, `app.synth()` raises on any finding that is neither fixed nor
acknowledged, so `cdk synth`, `cdk deploy` and the infra tests all fail closed.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks


def apply_nag_packs(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(
        # Acknowledgments are also written into the template's Metadata, so the deployed stack
        # carries its own audit trail of what was accepted and why.
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True),
        HIPAASecurityChecks(app, verbose=True, write_suppressions_to_cloud_formation=True),
    )
