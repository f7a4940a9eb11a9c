"""What the CLI prints when something goes wrong: one line, never a traceback (unless `--debug`).

Exit codes: 0 success; 1 a check failed or an action was refused (an invalid mapping, a missing review
item, an unreachable service); 2 bad usage (unknown option, missing argument, malformed value).
"""

from __future__ import annotations

import httpx
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A refusal or failure with a clear one-line message (exit code 1)."""

    exit_code = EXIT_FAILED


class UsageError(CliError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = EXIT_USAGE


def describe(exc: BaseException) -> str | None:
    """A one-line description of a failure of a service the CLI talks to; None if it is not one.

    Only types, URLs, AWS error codes and status codes: never a response body or a request value,
    which may hold patient data.
    """
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot connect to {_origin(exc)}: is it running and reachable?"
    if isinstance(exc, httpx.TimeoutException):
        return f"{_origin(exc)} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{exc.request.method} {exc.request.url.copy_with(query=None)} answered {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP request failed ({type(exc).__name__})"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to the AWS endpoint {exc.kwargs.get('endpoint_url', '')}: is it running and reachable?"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: configure a profile or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS {exc.operation_name} failed: {error.get('Code', '?')} ({error.get('Message', '')[:200]})"
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed ({type(exc).__name__})"
    return None


def _origin(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised without a request
        return "the server"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
