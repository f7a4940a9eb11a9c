"""What `calehr availability` and `calehr providers` do (registered by `cli.commands.availability`): the
feed subject an operator names, the feed store and rows of a target, and one availability run over the
local stack or a deployed stack's resources (docs/availability.md)."""

from __future__ import annotations

import json
import os
from typing import Any

from cli.errors import CliError, UsageError
from cli.target import Target
from shared.availability.serve_feed import calendar_name
from shared.availability.sync_feeds import FeedSubject, subject_of
from shared.stores.feeds import FeedStore


def feed_subject(practitioner: str | None, location: str | None) -> FeedSubject:
    if (practitioner is None) == (location is None):
        raise UsageError("give --practitioner NPI|Practitioner/<id> or --location Location/<id>")
    value = practitioner or location or ""
    subject = subject_of(value)
    valid = (subject.kind == "location" and location is not None and value.startswith("Location/")) or (
        subject.kind == "practitioner" and ((value.isdigit() and len(value) == 10) or value.startswith("Practitioner/"))
    )
    if not valid or len(value) > 80:
        raise UsageError("--practitioner takes a 10-digit NPI or Practitioner/<id>; --location takes Location/<id>")
    return subject


def feed_store(target: Target) -> FeedStore:
    return FeedStore(target.get("availability_table"), client=target.client("dynamodb"))


def feed_row(target: Target, store: FeedStore, subject: FeedSubject) -> dict[str, Any]:
    meta = store.feed(subject.feed_id)
    if meta is None:
        raise CliError(
            f"no busy feed for {subject.subject} yet: is it in the clinic mapping? Run `calehr availability sync`"
        )
    busy = sorted(store.busy(subject.feed_id))
    return {
        "feed": subject.feed_id,
        "name": calendar_name(meta.name),
        "url": f"{target.get('feed_base_url')}{meta.token}.ics",
        "busy_intervals": len(busy),
        "updated_at": meta.updated_at.isoformat(),
    }


def local_run(target: Target) -> Any:
    from shared.availability.scheduled_run import AvailabilityRun  # noqa: PLC0415
    from shared.clinic.source import load_config  # noqa: PLC0415
    from shared.ehr.fhir.client import FhirR4Client  # noqa: PLC0415
    from shared.settings import AvailabilitySettings  # noqa: PLC0415

    target.ensure_running()
    settings = AvailabilitySettings.model_validate(
        {
            "AVAILABILITY_TABLE": target.get("availability_table"),
            "EHR_BASE_URL": target.get("ehr_base_url"),
            "CLINIC_CONFIG_SOURCE": target.get("clinic_config_source"),
        }
    )
    readers = {"default": FhirR4Client(settings.ehr_base_url)}
    config = load_config(settings.clinic_config_source)
    return AvailabilityRun.of(settings, readers=readers, store=feed_store(target), config=config)


def calcom_key(target: Target) -> str:
    if os.environ.get("CALCOM_API_KEY"):
        return os.environ["CALCOM_API_KEY"]
    if target.kind == "local" and target.values.get("calcom_api_key"):
        return target.values["calcom_api_key"]
    if target.kind == "stack":
        name = target.get("calcom_api_secret_name")
        document = json.loads(target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
        key = document.get("api_key") if isinstance(document, dict) else None
        if isinstance(key, str) and key:
            return key
    raise UsageError("providers check needs a Cal.com API key: CALCOM_API_KEY, --local, --stack NAME (or --no-calcom)")


def stack_run(target: Target) -> Any:
    from cli.doctor import endpoint_auth  # noqa: PLC0415
    from shared.availability.scheduled_run import AvailabilityRun  # noqa: PLC0415
    from shared.clinic.load import parse_config  # noqa: PLC0415
    from shared.ehr.fhir.client import FhirR4Client  # noqa: PLC0415
    from shared.settings import AvailabilitySettings  # noqa: PLC0415

    base_url = target.get("ehr_base_url")
    secret = json.loads(
        target.client("secretsmanager").get_secret_value(SecretId=target.get("ehr_auth_secret_name"))["SecretString"]
    )
    profile = target.optional("ehr_profile") or "generic"
    auth = endpoint_auth(secret, base_url, profile, region=target.region, timeout_seconds=10)
    source = target.get("clinic_config_source")
    if not source.startswith("ssm:"):
        raise CliError("providers check --stack reads the clinic mapping from SSM; use --local or a file")
    text = target.client("ssm").get_parameter(Name=source.removeprefix("ssm:"))["Parameter"]["Value"]
    settings = AvailabilitySettings.model_validate(
        {
            "AVAILABILITY_TABLE": target.get("availability_table"),
            "EHR_BASE_URL": base_url,
            "CLINIC_CONFIG_SOURCE": source,
        }
    )
    readers = {"default": FhirR4Client(base_url, auth=auth)}
    return AvailabilityRun.of(settings, readers=readers, store=feed_store(target), config=parse_config(text))
