// OperationOutcome helpers and the error type the wrapper answers with its own status code.

export function outcome(code, text, { severity = 'error', expression, coding, diagnostics, id } = {}) {
  return {
    resourceType: 'OperationOutcome',
    ...(id ? { id } : {}),
    issue: [{
      severity, code,
      details: { ...(coding ? { coding } : {}), text },
      ...(diagnostics ? { diagnostics } : {}),
      ...(expression ? { expression: [expression].flat() } : {}),
    }],
  };
}

/** An answer with a chosen HTTP status (the router's OperationOutcomeError maps ids to a few statuses only). */
export class FhirError extends Error {
  constructor(status, body, headers = {}) {
    super(body?.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

export const fail = (status, code, text, extra) => new FhirError(status, outcome(code, text, extra));
