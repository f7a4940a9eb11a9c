// Scheduling dialects of the local FHIR server: one per server instance (launch option or POST /$scheduling).
//
//   generic   Medplum semantics: any Appointment is accepted, Slots are plain resources; `$find`/`$book` are
//             not offered. Option slotConsistency: Slots follow the Appointments that reference them.
//   argonaut  Argonaut Scheduling IG 1.0.1: Appointment/$find proposes, Appointment/$book commits
//             (appt-id | appt-resource); a taken slot is HTTP 200 with the Appointment `cancelled`.
//   ihe       IHE ITI Scheduling 1.0.0 (ITI-115/117): the same operations with IHE parameter names; a taken
//             slot is a Bundle holding only an OperationOutcome.
//   epic      Epic's STU3-style $find/$book parameter names (startTime/endTime/serviceType, patient and
//             appointment as identifiers), no Slot/Schedule search, no Appointment create/update.
//   oracle    Oracle Health Millennium R4: a booked create must reference exactly one free Slot (422
//             otherwise), JSON Patch only with its allowed operations, Slot search by service-type and a
//             start range returning only free Slots.
//   canvas    Canvas Medical: no stored-Slot references; Slot search computes free Slots of a Schedule;
//             option doubleBookingAllowed (Canvas default true) refuses overlapping Appointments with 422.
//
// Sources are named next to each rule and in docs/ehr-support.md ("Local stand-ins").
// Every "read a Slot, then write" sequence runs inside one lock (lib/mutex.mjs): Medplum's MemoryRepository
// has no transactions, and two requests interleave at every await.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationOutcomeError, badRequest, deepClone, normalizeOperationOutcome, validateResource } from '@medplum/core';
import { FhirError, fail, outcome } from './errors.mjs';
import { Mutex } from './mutex.mjs';

export const MODES = ['generic', 'argonaut', 'ihe', 'epic', 'oracle', 'canvas'];
const FIND_BOOK_MODES = new Set(['argonaut', 'ihe', 'epic']);
const DEFAULT_OPTIONS = {
  slotConsistency: false, // generic only: keep Slots busy/free with the Appointments referencing them
  proposalTtlSeconds: 900, // how long a $find proposal can be booked
  epicTakenStatus: 400, // Epic's answer to a taken slot is not public: both parts are settable
  epicTakenCode: 'stand-in-slot-taken',
  doubleBookingAllowed: true, // canvas: Canvas's default
  raceWindowMs: 0, // wait between checking a Slot and writing it (an EHR's database round trips)
  lock: true, // test-only: false shows what the lock prevents (two bookings of one slot)
};
const OPTION_TYPES = {
  slotConsistency: 'boolean', proposalTtlSeconds: 'number', epicTakenStatus: 'number', epicTakenCode: 'string',
  doubleBookingAllowed: 'boolean', raceWindowMs: 'number', lock: 'boolean',
};
// Appointment statuses that keep their Slots busy (R4 Appointment.status comment: cancelled releases them).
const HOLDING = new Set(['pending', 'booked', 'arrived', 'checked-in', 'fulfilled', 'noshow']);
const BUSY = new Set(['busy', 'busy-unavailable', 'busy-tentative']);
const EPIC_ERRORS = 'urn:oid:1.2.840.114350.1.13.0.1.7.2.657369';
const ORACLE_PATCH_STATUS = new Set(['arrived', 'checked-in', 'cancelled', 'booked', 'fulfilled']);
const ORACLE_TRANSITIONS = {
  proposed: ['booked', 'cancelled'], booked: ['arrived', 'checked-in', 'cancelled'],
  arrived: ['checked-in', 'cancelled'], 'checked-in': ['fulfilled', 'cancelled'],
};

const ms = (value) => Date.parse(value ?? '');
const overlaps = (a, b) => ms(a.start) < ms(b.end) && ms(b.start) < ms(a.end);
const businessRule = (text) => fail(422, 'business-rule', text);

/** `Practitioner/x`, `https://host/base/Practitioner/x`, `Practitioner/x/_history/2` → `Practitioner/x`. */
export function referenceOf(value) {
  if (typeof value !== 'string' || !value) return undefined;
  const parts = value.split('?')[0].split('/').filter(Boolean);
  const history = parts.indexOf('_history');
  const kept = history >= 0 ? parts.slice(0, history) : parts;
  return kept.length >= 2 ? kept.slice(-2).join('/') : undefined;
}

function parameters(ctx) {
  const list = [];
  if (ctx.body !== undefined) {
    if (ctx.body?.resourceType !== 'Parameters' && ctx.body?.resourceType !== 'Appointment') {
      throw fail(400, 'invalid', 'The operation body must be a Parameters resource');
    }
    if (ctx.body.resourceType === 'Parameters') list.push(...(ctx.body.parameter ?? []));
  }
  for (const [name, valueString] of ctx.url.searchParams) list.push({ name, valueString });
  return {
    all: (name) => list.filter((p) => p.name === name),
    one: (name) => list.find((p) => p.name === name),
  };
}

const scalar = (p) => p && (p.valueString ?? p.valueUri ?? p.valueUrl ?? p.valueCanonical ?? p.valueCode
  ?? p.valueDateTime ?? p.valueInstant ?? p.valueDate ?? p.valueInteger ?? p.valuePositiveInt);

function codings(concepts) {
  return [concepts ?? []].flat().flatMap((c) => c?.coding ?? []);
}

/** `system|code` or `code` → {system, code}. */
function token(text) {
  const value = String(text);
  const bar = value.lastIndexOf('|');
  return bar >= 0 ? { system: value.substring(0, bar) || undefined, code: value.substring(bar + 1) } : { code: value };
}

function preference(wanted, have) {
  if (!wanted.length) return 0;
  const index = wanted.findIndex((w) => have.some((c) => c.code === w.code && (!w.system || c.system === w.system)));
  return index;
}

export class Scheduling {
  constructor(repo, mode = 'generic') {
    this.repo = repo;
    this.lock = new Mutex();
    this.proposals = new Map(); // id -> {appointment, slots: [ref], expires, booked}
    this.configure({ mode, options: {} });
    repo.afterWrite.push((stored, previous) => this.#slotBookkeeping(stored, previous));
    repo.searchRules.push((request) => this.#searchRule(request));
  }

  configure({ mode, options = {} } = {}) {
    if (!MODES.includes(mode)) throw new Error(`mode must be one of ${MODES.join(', ')}`);
    if (!options || typeof options !== 'object' || Array.isArray(options)) throw new Error('options must be an object');
    for (const [key, value] of Object.entries(options)) {
      if (!(key in OPTION_TYPES)) throw new Error(`unknown option ${key}`);
      if (typeof value !== OPTION_TYPES[key]) throw new Error(`option ${key} must be a ${OPTION_TYPES[key]}`);
      if (OPTION_TYPES[key] === 'number' && !(Number.isFinite(value) && value >= 0 && value <= 86400)) {
        throw new Error(`option ${key} must be between 0 and 86400`);
      }
    }
    if (options.epicTakenStatus !== undefined && !(Number.isInteger(options.epicTakenStatus)
      && options.epicTakenStatus >= 200 && options.epicTakenStatus <= 599)) {
      throw new Error('option epicTakenStatus must be an HTTP status');
    }
    this.mode = mode;
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.proposals.clear();
    return this.describe();
  }

  describe() {
    return { mode: this.mode, options: this.options };
  }

  reset() {
    this.proposals.clear();
  }

  /** Slots follow their Appointments in every dialect except plain generic and canvas (no Slot references). */
  get slotBookkeeping() {
    return this.mode === 'generic' ? this.options.slotConsistency : this.mode !== 'canvas';
  }

  #locked(task) {
    return this.options.lock ? this.lock.run(task) : task();
  }

  /** Writes of Slots and, where Slots follow Appointments, of Appointments wait for the scheduling lock. */
  writeNeedsLock(ctx) {
    if (ctx.req.method === 'GET') return false;
    const types = ctx.resourceType ? [ctx.resourceType]
      : (ctx.body?.entry ?? []).map((e) => (e?.request?.url ?? '').split(/[/?]/)[0]);
    return types.includes('Slot') || (types.includes('Appointment') && (this.slotBookkeeping || this.mode === 'canvas'));
  }

  runLocked(task) {
    return this.#locked(task);
  }

  // -- routing -----------------------------------------------------------------------------------------

  /** Answers the requests the dialect handles itself; undefined lets the request reach the router. */
  async intercept(ctx) {
    const { method } = ctx.req;
    const [type, id, op, ...rest] = ctx.segments;
    if (type === 'Appointment' && (id === '$find' || id === '$book' || op === '$book') && !rest.length) {
      if (!FIND_BOOK_MODES.has(this.mode)) return undefined; // the router answers 404, as before
      if (id === '$find' && op === undefined && (method === 'GET' || method === 'POST')) return this.find(ctx);
      if (method !== 'POST') throw fail(405, 'not-supported', `${id === '$find' ? '$find' : '$book'} takes POST`);
      if (id === '$book' && op === undefined) return this.book(ctx);
      if (op === '$book' && id !== '$find' && id !== '$book') return this.book(ctx, id);
      return undefined;
    }
    if (ctx.staff) return undefined; // a change made inside the EHR: vendor API limits do not apply
    if (this.mode === 'epic') return this.#epicLimits(ctx, type, id);
    if (this.mode === 'oracle') return this.#oracleRoute(ctx, type, id, op);
    if (this.mode === 'canvas') return this.#canvasRoute(ctx, type, id);
    return undefined;
  }

  // Epic: Appointment $find/$book, Appointment/Slot/Schedule read (open.epic.com DesignOverview, Case Study A).
  #epicLimits(ctx, type, id) {
    const { method } = ctx.req;
    if (type === 'Appointment' && method !== 'GET') {
      throw fail(405, 'not-supported', 'Appointments are booked with Appointment/$book here; create, update and '
        + 'patch are not offered');
    }
    if ((type === 'Slot' || type === 'Schedule') && (method !== 'GET' || !id)) {
      throw fail(403, 'forbidden', `${type} offers read by id only`);
    }
    if (!type && method === 'POST' && (ctx.body?.entry ?? []).some((e) => /^(Appointment|Slot|Schedule)\b/.test(e?.request?.url ?? '')
      && e.request.method !== 'GET')) {
      throw fail(405, 'not-supported', 'Appointment, Slot and Schedule writes are not offered in a batch');
    }
    return undefined;
  }

  // -- $find ----------------------------------------------------------------------------------------------

  async find(ctx) {
    const params = parameters(ctx);
    const [startName, endName] = this.mode === 'epic' ? ['startTime', 'endTime'] : ['start', 'end'];
    const severity = this.mode === 'ihe' ? 'fatal' : 'error'; // ITI-115: errors as OperationOutcome, fatal
    const window = { start: scalar(params.one(startName)), end: scalar(params.one(endName)) };
    for (const [name, value] of [[startName, window.start], [endName, window.end]]) {
      if (value === undefined) throw new FhirError(400, outcome('required', `Parameter ${name} is required`, { severity }));
      if (!Number.isFinite(ms(value))) {
        throw new FhirError(400, outcome('value', `Parameter ${name} must be a dateTime`, { severity }));
      }
    }
    if (ms(window.end) <= ms(window.start)) {
      throw new FhirError(400, outcome('value', `${endName} must be after ${startName}`, { severity }));
    }
    const practitioners = this.#actors(params.all('practitioner'), 'Practitioner');
    const locations = this.#actors(params.all('location-reference'), 'Location');
    const visitTypes = this.mode === 'epic'
      ? params.all('serviceType').flatMap((p) => codings(p.valueCodeableConcept))
      : params.all('visit-type').map((p) => token(scalar(p)));
    const specialties = this.mode === 'epic'
      ? params.all('specialties').flatMap((p) => codings(p.valueCodeableConcept))
      : params.all('specialty').map((p) => token(scalar(p)));
    const countParam = scalar(params.one('_count'));
    const count = countParam === undefined ? Infinity : Number(countParam);
    if (!(Number.isInteger(count) || count === Infinity) || count < 0) {
      throw new FhirError(400, outcome('value', '_count must be a non-negative integer', { severity }));
    }

    const candidates = [];
    for (const slot of this.repo.all('Slot')) {
      if (slot.status !== 'free' || ms(slot.start) < ms(window.start) || ms(slot.end) > ms(window.end)) continue;
      const schedule = this.#schedule(slot);
      if (!schedule || schedule.active === false) continue;
      const actors = (schedule.actor ?? []).map((a) => a.reference);
      if (practitioners && !practitioners.some((p) => actors.includes(p))) continue;
      if (locations && !locations.some((l) => actors.includes(l))) continue;
      const rank = preference(visitTypes, codings(slot.serviceType?.length ? slot.serviceType : schedule.serviceType));
      if (rank < 0) continue;
      if (preference(specialties, codings(slot.specialty?.length ? slot.specialty : schedule.specialty)) < 0) continue;
      if (!this.#bookable(slot)) continue;
      candidates.push({ slot, schedule, rank });
    }
    candidates.sort((a, b) => ms(a.slot.start) - ms(b.slot.start) || a.rank - b.rank);
    this.#expireProposals();
    const entries = candidates.slice(0, count).map(({ slot, schedule }) => {
      const appointment = this.#proposal(slot, schedule, window);
      return { fullUrl: `${ctx.base}/Appointment/${appointment.id}`, resource: appointment, search: { mode: 'match' } };
    });
    const bundle = { resourceType: 'Bundle', type: 'searchset', total: candidates.length, entry: entries };
    if (!entries.length && this.mode === 'epic') {
      // Epic answers an empty $find with an OperationOutcome entry (examples: epic-find-empty-response.json).
      bundle.entry = [{ fullUrl: `urn:uuid:${randomUUID()}`, search: { mode: 'outcome' },
        resource: outcome('processing', 'Resource request returns no results.', { severity: 'warning',
          coding: [{ system: EPIC_ERRORS, code: '4101', display: 'Resource request returns no results.' }] }) }];
    }
    if (!bundle.entry.length) delete bundle.entry;
    return { status: 200, body: bundle };
  }

  #actors(params, type) {
    if (!params.length) return undefined;
    const refs = [];
    for (const p of params) {
      const identifier = p.valueReference?.identifier;
      if (identifier) {
        for (const resource of this.repo.all(type)) {
          if ((resource.identifier ?? []).some((i) => i.value === identifier.value
            && (!identifier.system || i.system === identifier.system))) refs.push(`${type}/${resource.id}`);
        }
      } else {
        const ref = referenceOf(p.valueReference?.reference ?? scalar(p));
        if (ref) refs.push(ref);
      }
    }
    return refs;
  }

  #schedule(slot) {
    const [type, id] = (slot.schedule?.reference ?? '').split('/');
    return type === 'Schedule' ? this.repo.current('Schedule', id) : undefined;
  }

  /** Free now: status free, no busy Slot of its Schedule over it, no Appointment holding it. */
  #bookable(slot) {
    if (slot?.status !== 'free') return false;
    const schedule = slot.schedule?.reference;
    if (this.repo.all('Slot').some((other) => other.id !== slot.id && other.schedule?.reference === schedule
      && BUSY.has(other.status) && overlaps(other, slot))) return false;
    return !this.repo.all('Appointment').some((a) => HOLDING.has(a.status)
      && (a.slot ?? []).some((s) => s.reference === `Slot/${slot.id}`));
  }

  #proposal(slot, schedule, window) {
    const id = `proposed-${randomUUID()}`;
    const appointment = {
      resourceType: 'Appointment', id, status: 'proposed',
      ...(slot.serviceType?.length || schedule.serviceType?.length
        ? { serviceType: deepClone(slot.serviceType?.length ? slot.serviceType : schedule.serviceType) } : {}),
      ...(slot.appointmentType ? { appointmentType: deepClone(slot.appointmentType) } : {}),
      ...(slot.specialty?.length ? { specialty: deepClone(slot.specialty) } : {}),
      start: slot.start, end: slot.end,
      participant: (schedule.actor ?? []).map((actor) => ({ actor: deepClone(actor), required: 'required', status: 'needs-action' })),
      requestedPeriod: [{ start: window.start, end: window.end }],
    };
    if (this.mode === 'epic') {
      // Epic's proposals carry the Slot contained (cobalt-api AppointmentFindFhirStu3Response).
      appointment.contained = [{ resourceType: 'Slot', id: 'slot', schedule: deepClone(slot.schedule), status: 'free',
        start: slot.start, end: slot.end }];
      appointment.slot = [{ reference: '#slot' }];
    } else {
      appointment.slot = [{ reference: `Slot/${slot.id}` }];
    }
    this.proposals.set(id, {
      appointment, slots: [`Slot/${slot.id}`], booked: false,
      expires: Date.now() + this.options.proposalTtlSeconds * 1000,
    });
    return deepClone(appointment);
  }

  #expireProposals() {
    const now = Date.now();
    for (const [id, proposal] of this.proposals) if (proposal.expires <= now) this.proposals.delete(id);
  }

  // -- $book ----------------------------------------------------------------------------------------------

  async book(ctx, pathId) {
    const params = parameters(ctx);
    this.#expireProposals();
    const request = this.#bookRequest(ctx, params, pathId);
    if (request.cancel) return this.#ihecancel(ctx, request);
    let proposal;
    if (request.proposalId !== undefined) {
      proposal = this.proposals.get(request.proposalId);
      if (!proposal) return this.#unknownProposal();
    }
    const draft = proposal ? deepClone(proposal.appointment) : request.resource;
    const slotRefs = proposal ? proposal.slots : (draft.slot ?? []).map((s) => referenceOf(s.reference)).filter(Boolean);
    if (!slotRefs.length || slotRefs.some((ref) => !ref.startsWith('Slot/'))) {
      throw fail(400, 'required', 'The Appointment to book must reference the Slot(s) it fills', { expression: 'Appointment.slot' });
    }
    const patients = this.#patients(request, draft);
    return this.#locked(async () => {
      const slots = slotRefs.map((ref) => this.repo.current('Slot', ref.split('/')[1]));
      const free = slots.every((slot) => this.#bookable(slot));
      if (this.options.raceWindowMs) await sleep(this.options.raceWindowMs);
      if (!free) return this.#taken(draft);
      const booked = this.#bookedAppointment(draft, slots, patients, request.comment);
      const stored = await this.#commit(slots, booked);
      if (proposal) proposal.booked = true;
      const bundle = { resourceType: 'Bundle', type: 'searchset', total: 1,
        entry: [{ fullUrl: `${ctx.base}/Appointment/${stored.id}`, resource: stored, search: { mode: 'match' } }] };
      if (request.resource && this.mode === 'argonaut') {
        // Argonaut appt-resource: "HTTP/1.1 201 Created" with Location (appt-book-resource.md).
        return { status: 201, body: bundle, headers: { Location: `${ctx.base}/Appointment/${stored.id}/_history/${stored.meta.versionId}` } };
      }
      return { status: 200, body: bundle };
    });
  }

  #bookRequest(ctx, params, pathId) {
    const bare = ctx.body?.resourceType === 'Appointment' ? ctx.body : undefined;
    const comment = scalar(params.one(this.mode === 'epic' ? 'appointmentNote' : 'comment'));
    if (this.mode === 'epic') {
      const appointment = params.one('appointment');
      const id = appointment?.valueIdentifier?.value ?? scalar(appointment);
      if (id === undefined) throw fail(400, 'required', 'Parameter appointment is required', { expression: 'appointment' });
      const patient = params.one('patient');
      const patientId = patient?.valueIdentifier?.value ?? scalar(patient);
      if (patientId === undefined) throw fail(400, 'required', 'Parameter patient is required', { expression: 'patient' });
      return { proposalId: String(id), patientRefs: [`Patient/${patientId}`], comment };
    }
    if (this.mode === 'argonaut') {
      const idParam = scalar(params.one('appt-id'));
      const resource = params.one('appt-resource')?.resource ?? bare;
      const proposalId = pathId ?? (idParam === undefined ? undefined : (referenceOf(idParam)?.split('/')[1] ?? idParam));
      if ((proposalId === undefined) === (resource === undefined)) {
        throw fail(400, 'required', 'Give exactly one of appt-id and appt-resource');
      }
      const patientRefs = params.all('patient-id').map((p) => referenceOf(scalar(p)) ?? `Patient/${scalar(p)}`);
      return { proposalId, resource: this.#checkedResource(resource), patientRefs, comment };
    }
    // ihe
    const reference = params.one('appointment-reference')?.valueReference?.reference;
    const resource = params.one('appointment-resource')?.resource;
    const proposalId = pathId ?? (reference ? referenceOf(reference)?.split('/')[1] : undefined);
    if ((proposalId === undefined) === (resource === undefined)) {
      throw fail(400, 'required', 'Give exactly one of appointment-reference and appointment-resource', { severity: 'fatal' });
    }
    if (resource && resource.status !== 'pending') {
      if (resource.status === 'cancelled' && resource.id) return { cancel: true, resource };
      throw fail(400, 'not-supported', 'appointment-resource must be pending (a new booking) or cancelled with an id');
    }
    const patientRefs = [];
    for (const p of params.all('patient-resource')) patientRefs.push(this.#patientByResource(p.resource));
    for (const p of params.all('patient-reference')) patientRefs.push(referenceOf(p.valueReference?.reference) ?? '');
    return { proposalId, resource: this.#checkedResource(resource), patientRefs, comment };
  }

  #checkedResource(resource) {
    if (resource === undefined) return undefined;
    if (resource?.resourceType !== 'Appointment') throw fail(400, 'invalid', 'The booked resource must be an Appointment');
    const draft = deepClone(resource);
    delete draft.id;
    delete draft.meta?.versionId;
    return draft;
  }

  #patientByResource(patient) {
    if (patient?.resourceType !== 'Patient') throw fail(400, 'invalid', 'patient-resource must be a Patient');
    if (patient.id) return `Patient/${patient.id}`;
    const matches = this.repo.all('Patient').filter((p) => (patient.identifier ?? []).some((wanted) =>
      (p.identifier ?? []).some((i) => i.value === wanted.value && (!wanted.system || i.system === wanted.system))));
    if (matches.length !== 1) throw fail(400, 'invalid', 'Invalid patient-resource: no single Patient matches its identifiers');
    return `Patient/${matches[0].id}`;
  }

  #patients(request, draft) {
    const refs = new Set(request.patientRefs);
    for (const p of draft.participant ?? []) {
      const ref = referenceOf(p.actor?.reference);
      if (ref?.startsWith('Patient/')) refs.add(ref);
    }
    if (!refs.size) throw fail(400, 'required', 'The booking needs a Patient');
    for (const ref of refs) {
      // medplum book.ts: "Invalid patient-reference" for a Patient that does not resolve.
      if (!ref.startsWith('Patient/') || !this.repo.current('Patient', ref.split('/')[1])) {
        throw fail(400, 'invalid', 'Invalid patient-reference');
      }
    }
    return [...refs];
  }

  #bookedAppointment(draft, slots, patients, comment) {
    const appointment = deepClone(draft);
    delete appointment.id;
    delete appointment.contained;
    delete appointment.requestedPeriod;
    appointment.status = 'booked';
    appointment.slot = slots.map((slot) => ({ reference: `Slot/${slot.id}` }));
    appointment.start = slots.map((s) => s.start).sort((a, b) => ms(a) - ms(b))[0];
    appointment.end = slots.map((s) => s.end).sort((a, b) => ms(b) - ms(a))[0];
    const participants = (appointment.participant ?? []).map((p) => ({ ...p, status: 'accepted' }));
    for (const ref of patients) {
      if (!participants.some((p) => referenceOf(p.actor?.reference) === ref)) {
        participants.push({ actor: { reference: ref }, required: 'required', status: 'accepted' });
      }
    }
    for (const slot of slots) {
      for (const actor of this.#schedule(slot)?.actor ?? []) {
        if (!participants.some((p) => p.actor?.reference === actor.reference)) {
          participants.push({ actor: deepClone(actor), required: 'required', status: 'accepted' });
        }
      }
    }
    appointment.participant = participants;
    if (comment !== undefined) appointment.comment = String(comment);
    return appointment;
  }

  /** Slots busy first, then the Appointment; a failed Appointment write puts the Slots back. */
  async #commit(slots, appointment) {
    try {
      validateResource(appointment);
    } catch (err) {
      throw new FhirError(400, normalizeOperationOutcome(err));
    }
    const before = slots.map((slot) => deepClone(slot));
    const written = [];
    try {
      for (const slot of slots) written.push(await this.repo.updateResource({ ...deepClone(slot), status: 'busy' }));
      return await this.repo.createResource(appointment);
    } catch (err) {
      for (const slot of before.slice(0, written.length)) await this.repo.updateResource(slot);
      throw err;
    }
  }

  #taken(draft) {
    const text = 'The requested appointment is no longer available';
    if (this.mode === 'argonaut') {
      // Argonaut: "If the booking is rejected, the Appointment resource will have an updated status of cancelled".
      const rejected = { ...deepClone(draft), status: 'cancelled',
        participant: (draft.participant ?? []).map((p) => ({ ...p, status: 'declined' })) };
      delete rejected.contained;
      if (rejected.slot?.some((s) => s.reference?.startsWith('#'))) delete rejected.slot;
      return { status: 200, body: { resourceType: 'Bundle', type: 'searchset', total: 1, entry: [
        { resource: rejected, search: { mode: 'match' } },
        { resource: outcome('conflict', text), search: { mode: 'outcome' } },
      ] } };
    }
    if (this.mode === 'ihe') {
      // ITI-117: "An unsuccessful $book operation SHALL return only an OperationOutcome resource within the Bundle".
      return { status: 200, body: { resourceType: 'Bundle', type: 'searchset', total: 0,
        entry: [{ resource: outcome('conflict', text), search: { mode: 'outcome' } }] } };
    }
    return { status: this.options.epicTakenStatus, body: outcome('processing', text, {
      coding: [{ system: EPIC_ERRORS, code: this.options.epicTakenCode, display: text }] }) };
  }

  #unknownProposal() {
    if (this.mode === 'epic') {
      // cobalt-api DefaultEpicClient: Epic's answer to an unknown appointment id (epic-book-invalid-appointment-oo.json).
      const text = 'The reference provided was not found.';
      return { status: 400, body: outcome('not-found', text, { severity: 'fatal', diagnostics: 'invalid appointment ID',
        expression: 'appointment', coding: [{ system: EPIC_ERRORS, code: '59144', display: text }] }) };
    }
    return { status: 404, body: outcome('not-found', 'The appointment to book was not found (unknown or expired proposal)') };
  }

  async #ihecancel(ctx, request) {
    return this.#locked(async () => {
      const current = this.repo.current('Appointment', request.resource.id);
      if (!current) return { status: 200, body: { resourceType: 'Bundle', type: 'searchset', total: 0,
        entry: [{ resource: outcome('not-found', 'Appointment not found'), search: { mode: 'outcome' } }] } };
      const stored = await this.repo.updateResource({ ...deepClone(current), status: 'cancelled' });
      return { status: 200, body: { resourceType: 'Bundle', type: 'searchset', total: 1,
        entry: [{ fullUrl: `${ctx.base}/Appointment/${stored.id}`, resource: stored, search: { mode: 'match' } }] } };
    });
  }

  // -- Slots follow Appointments -----------------------------------------------------------------------

  async #slotBookkeeping(stored, previous) {
    if (!this.slotBookkeeping || (stored ?? previous).resourceType !== 'Appointment') return;
    const held = (resource) => (resource && HOLDING.has(resource.status)
      ? (resource.slot ?? []).map((s) => s.reference).filter((r) => r?.startsWith('Slot/')) : []);
    const now = held(stored);
    for (const ref of now) {
      const slot = this.repo.current('Slot', ref.split('/')[1]);
      if (slot && (slot.status === 'free' || slot.status === 'busy-tentative')) {
        await this.repo.updateResource({ ...deepClone(slot), status: 'busy' });
      }
    }
    for (const ref of held(previous).filter((r) => !now.includes(r))) {
      const slot = this.repo.current('Slot', ref.split('/')[1]);
      const stillHeld = this.repo.all('Appointment').some((a) => a.id !== (stored ?? previous).id
        && HOLDING.has(a.status) && (a.slot ?? []).some((s) => s.reference === ref));
      if (slot?.status === 'busy' && !stillHeld) await this.repo.updateResource({ ...deepClone(slot), status: 'free' });
    }
  }

  // -- search rules ---------------------------------------------------------------------------------------

  async #searchRule(request) {
    const type = request.resourceType;
    if (this.mode === 'epic' && (type === 'Slot' || type === 'Schedule')) {
      throw new OperationOutcomeError({ ...outcome('forbidden', `${type} search is not offered (read by id only)`), id: 'forbidden' });
    }
    if (this.mode === 'oracle' && type === 'Slot') this.#oracleSlotSearch(request);
    if (this.mode === 'oracle' && type === 'Appointment') this.#oracleAppointmentSearch(request);
  }

  // cerner/fhir.cerner.com content/millennium/r4/base/workflow/slot.md
  #oracleSlotSearch(request) {
    const filters = request.filters;
    const codes = filters.map((f) => f.code);
    const once = (code) => {
      if (codes.filter((c) => c === code).length > 1) throw new OperationOutcomeError(badRequest(`${code} may be given only once`));
    };
    if (codes.includes('_id')) return; // "booked slots may still be retrieved when using the _id parameter"
    if (!codes.includes('service-type')) throw new OperationOutcomeError(badRequest('Slot search requires _id or service-type'));
    ['service-type', 'schedule.actor', '-location'].forEach(once);
    const starts = filters.filter((f) => f.code === 'start');
    if (starts.length !== 2 || !starts.some((f) => f.operator === 'ge') || !starts.some((f) => f.operator === 'lt')) {
      throw new OperationOutcomeError(badRequest('start must be given as a ge/lt pair with service-type, schedule.actor or -location'));
    }
    const location = filters.find((f) => f.code === '-location');
    if (location) {
      // A Slot's scheduling location: here a Location actor of its Schedule.
      const wanted = location.value.split(',');
      const schedules = this.repo.all('Schedule').filter((s) => (s.actor ?? []).some((a) => wanted.includes(a.reference)));
      filters.splice(filters.indexOf(location), 1,
        { code: 'schedule', operator: 'eq', value: schedules.map((s) => `Schedule/${s.id}`).join(',') || 'Schedule/-no-match-' });
    }
    // "The search operation will only return free slots which are available to be booked"; sorted by start.
    filters.push({ code: 'status', operator: 'eq', value: 'free' });
    request.sortRules = [{ code: 'start', descending: false }];
  }

  // cerner/fhir.cerner.com content/millennium/r4/base/workflow/appointment.md (search)
  #oracleAppointmentSearch(request) {
    const codes = request.filters.map((f) => f.code);
    if (codes.includes('_id')) return;
    if (!['patient', 'practitioner', 'location'].some((c) => codes.includes(c))) {
      throw new OperationOutcomeError(badRequest('Appointment search requires _id, patient, practitioner or location'));
    }
    if (!codes.includes('date')) throw new OperationOutcomeError(badRequest('Appointment search by patient, practitioner or location requires date'));
    request.filters.push({ code: 'status', operator: 'not', value: 'proposed' }); // date searches exclude proposed
  }

  // -- Oracle writes ------------------------------------------------------------------------------------

  #oracleRoute(ctx, type, id, op) {
    const { method } = ctx.req;
    if (!type && method === 'POST' && (ctx.body?.entry ?? []).some((e) => /^(Appointment|Slot)\b/.test(e?.request?.url ?? '')
      && e.request.method !== 'GET')) {
      throw fail(400, 'not-supported', 'Appointment and Slot writes are not accepted in a batch');
    }
    if (type === 'Appointment' && !op) {
      if (method === 'POST' && !id) return this.#oracleCreate(ctx);
      if (method === 'PATCH' && id) return this.#oraclePatch(ctx, id);
      if (method === 'PUT' || method === 'DELETE') throw fail(405, 'not-supported', `Appointment ${method} is not supported; use PATCH`);
    }
    if (type === 'Slot' && !op) {
      if (method === 'PATCH' && id) return this.#oracleSlotPatch(ctx, id);
      if (method !== 'GET') throw fail(405, 'not-supported', `Slot ${method} is not supported; use PATCH`);
    }
    return undefined;
  }

  // appointment.md: create rules; answers 201 with no body, Location and ETag.
  async #oracleCreate(ctx) {
    const appointment = ctx.body;
    if (appointment?.resourceType !== 'Appointment') throw fail(400, 'invalid', 'Expected an Appointment');
    if (appointment.implicitRules) throw businessRule('implicitRules is not supported');
    if (appointment.modifierExtension) throw businessRule('modifierExtension is not supported');
    if ((appointment.participant ?? []).some((p) => p.type)) throw businessRule('participant.type must not be set');
    const patients = (appointment.participant ?? []).filter((p) => referenceOf(p.actor?.reference)?.startsWith('Patient/'));
    if (appointment.status === 'proposed') {
      const locations = (appointment.participant ?? []).filter((p) => referenceOf(p.actor?.reference)?.startsWith('Location/'));
      const period = appointment.requestedPeriod ?? [];
      if ((appointment.serviceType ?? []).length !== 1) throw businessRule('A proposed Appointment needs exactly one serviceType');
      if (patients.length !== 1 || locations.length < 1) throw businessRule('A proposed Appointment needs one Patient and at least one Location participant');
      if ((appointment.participant ?? []).some((p) => p.status !== 'needs-action')) throw businessRule('Participants of a proposed Appointment must be needs-action');
      if (period.length !== 1 || !period[0].start || !period[0].end) throw businessRule('A proposed Appointment needs one requestedPeriod with start and end');
      return this.#created(ctx, await this.#createChecked(appointment));
    }
    if (appointment.status !== 'booked') throw businessRule('Appointment.status must be proposed or booked');
    if ((appointment.slot ?? []).length !== 1) throw businessRule('Appointment.slot must contain exactly one Slot reference');
    if (patients.length !== 1 || patients[0].status !== 'accepted') throw businessRule('A booked Appointment needs exactly one Patient participant, accepted');
    return this.#locked(async () => {
      const slot = this.repo.current('Slot', (referenceOf(appointment.slot[0].reference) ?? '').replace(/^Slot\//, ''));
      if (!slot) throw businessRule('The Slot does not exist');
      const free = this.#bookable(slot);
      if (this.options.raceWindowMs) await sleep(this.options.raceWindowMs);
      if (!free) throw businessRule('The Slot is not available to be booked');
      const booked = this.#bookedAppointment({ ...deepClone(appointment), slot: [{ reference: `Slot/${slot.id}` }] }, [slot], [], undefined);
      return this.#created(ctx, await this.#commit([slot], booked));
    });
  }

  async #createChecked(resource) {
    try {
      validateResource(resource);
    } catch (err) {
      throw new FhirError(400, normalizeOperationOutcome(err));
    }
    return this.repo.createResource(deepClone(resource));
  }

  #created(ctx, stored) {
    return { status: 201, empty: true, headers: {
      Location: `${ctx.base}/Appointment/${stored.id}`, ETag: `W/"${stored.meta.versionId}"` } };
  }

  // appointment_patch.yaml: the allowed operations and transitions; If-Match required (r4.md: 412 / 409).
  async #oraclePatch(ctx, id) {
    const ops = ctx.body;
    if (!Array.isArray(ops) || !ops.length) throw fail(400, 'invalid', 'The body must be a JSON Patch array');
    return this.#locked(async () => {
      const current = this.#ifMatched(ctx, 'Appointment', id);
      const patched = deepClone(current);
      const status = ops.find((o) => o.op === 'replace' && o.path === '/status')?.value;
      for (const o of ops) {
        const key = `${o.op} ${o.path}`;
        if (key === 'replace /status') {
          if (!ORACLE_PATCH_STATUS.has(o.value)) throw businessRule(`status ${JSON.stringify(o.value)} cannot be patched`);
        } else if (key === 'add /slot') {
          if (status !== 'booked') throw businessRule('add /slot must come with replace /status booked');
        } else if (key === 'add /reasonCode') {
          if (status !== 'booked') throw businessRule('add /reasonCode must come with replace /status booked');
        } else if (key === 'add /cancelationReason') {
          if (status !== 'cancelled') throw businessRule('add /cancelationReason must come with replace /status cancelled');
        } else if (key !== 'replace /slot') {
          throw businessRule(`The patch operation ${key} is not supported`);
        }
        if ((o.path === '/slot') && (!Array.isArray(o.value) || o.value.length !== 1)) throw businessRule('Exactly one Slot reference');
        patched[o.path.substring(1)] = deepClone(o.value);
      }
      if (status && status !== current.status && !(ORACLE_TRANSITIONS[current.status] ?? []).includes(status)) {
        throw businessRule(`An Appointment cannot go from ${current.status} to ${status}`);
      }
      if (status === 'booked' && current.status === 'proposed' && !ops.some((o) => o.path === '/slot')) {
        throw businessRule('replace /status booked must come with add /slot');
      }
      const newSlot = ops.find((o) => o.path === '/slot');
      if (newSlot) {
        const slot = this.repo.current('Slot', (referenceOf(newSlot.value[0]?.reference) ?? '').replace(/^Slot\//, ''));
        const same = (current.slot ?? []).some((s) => s.reference === `Slot/${slot?.id}`);
        if (!slot || (!same && !this.#bookable(slot))) throw businessRule('The Slot is not available to be booked');
        if (this.options.raceWindowMs) await sleep(this.options.raceWindowMs);
        patched.slot = [{ reference: `Slot/${slot.id}` }];
        patched.start = slot.start; // Millennium derives time, practitioner and location from the Slot
        patched.end = slot.end;
      }
      try {
        validateResource(patched);
      } catch (err) {
        throw new FhirError(400, normalizeOperationOutcome(err));
      }
      const stored = await this.repo.updateResource(patched);
      return { status: 200, empty: true, headers: { ETag: `W/"${stored.meta.versionId}"` } };
    });
  }

  // slot_patch.yaml: only replace /status with free or busy-tentative (a hold and its release).
  async #oracleSlotPatch(ctx, id) {
    const ops = ctx.body;
    if (!Array.isArray(ops) || ops.length !== 1 || ops[0].op !== 'replace' || ops[0].path !== '/status'
      || !['free', 'busy-tentative'].includes(ops[0].value)) {
      throw businessRule('Only replace /status with free or busy-tentative is supported');
    }
    return this.#locked(async () => {
      const current = this.#ifMatched(ctx, 'Slot', id);
      if (ops[0].value === 'busy-tentative' && !this.#bookable(current)) throw businessRule('The Slot is not free');
      const stored = await this.repo.updateResource({ ...deepClone(current), status: ops[0].value });
      return { status: 200, empty: true, headers: { ETag: `W/"${stored.meta.versionId}"` } };
    });
  }

  #ifMatched(ctx, type, id) {
    const ifMatch = ctx.req.headers['if-match'];
    if (!ifMatch) throw fail(412, 'processing', 'If-Match is required');
    const current = this.repo.current(type, id);
    if (!current) throw fail(404, 'not-found', 'Not found');
    const version = /"([^"]+)"/.exec(ifMatch)?.[1] ?? ifMatch;
    if (version !== current.meta?.versionId) throw fail(409, 'conflict', 'The version given in If-Match is not current');
    return current;
  }

  // -- Canvas ---------------------------------------------------------------------------------------------

  #canvasRoute(ctx, type, id) {
    if (type === 'Slot' && ctx.req.method === 'GET' && !id) return this.#canvasSlots(ctx);
    return undefined;
  }

  /** Inside the lock, just before the router writes: the dialect's refusals that depend on stored data. */
  beforeWrite(ctx) {
    const [type, id] = ctx.segments;
    if (this.mode === 'canvas' && !ctx.staff && !this.options.doubleBookingAllowed && type === 'Appointment'
      && (ctx.req.method === 'POST' || ctx.req.method === 'PUT')) {
      this.#canvasDoubleBooking(ctx.body, id?.startsWith('$') ? undefined : id);
    }
  }

  // collections/_api/appointment.md "Prevent Double Booking"; errors.md shows the OperationOutcome.
  #canvasDoubleBooking(appointment, id) {
    if (appointment?.resourceType !== 'Appointment' || !appointment.start || !appointment.end
      || ['cancelled', 'entered-in-error', 'noshow'].includes(appointment.status)) return;
    const practitioners = (appointment.participant ?? []).map((p) => referenceOf(p.actor?.reference))
      .filter((r) => r?.startsWith('Practitioner/'));
    const same = (other) => other.id === (id ?? appointment.id) || (appointment.identifier ?? []).some((i) =>
      (other.identifier ?? []).some((o) => o.system === i.system && o.value === i.value));
    const clash = this.repo.all('Appointment').some((other) => !same(other)
      && !['cancelled', 'entered-in-error', 'noshow'].includes(other.status) && other.start && overlaps(other, appointment)
      && (other.participant ?? []).some((p) => practitioners.includes(referenceOf(p.actor?.reference))));
    if (clash) throw businessRule('This appointment time is no longer available.');
  }

  // collections/_api/slot.md: schedule required, start/end dates (end default start + 7 days), duration
  // default 20 minutes; only free, id-less Slots. Here the free time is the Schedule's stored free Slots
  // minus busy Slots and the Practitioner's Appointments (Canvas derives it from its calendar).
  #canvasSlots(ctx) {
    const q = ctx.url.searchParams;
    const scheduleId = q.get('schedule')?.replace(/^Schedule\//, '');
    if (!scheduleId) throw fail(400, 'required', 'schedule is required');
    const schedule = this.repo.current('Schedule', scheduleId);
    if (!schedule) throw fail(404, 'not-found', 'Schedule not found');
    const day = (value, fallback) => {
      if (value === null) return fallback;
      const t = Date.parse(`${value}T00:00:00Z`);
      if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || !Number.isFinite(t)) throw fail(400, 'value', 'start and end must be dates (YYYY-MM-DD)');
      return t;
    };
    const from = day(q.get('start'), Date.parse(`${new Date().toISOString().substring(0, 10)}T00:00:00Z`));
    const to = day(q.get('end'), from + 7 * 86400000);
    const duration = q.get('duration') === null ? 20 : Number(q.get('duration'));
    if (!Number.isInteger(duration) || duration < 1 || duration > 1440) throw fail(400, 'value', 'duration must be minutes');
    const ref = `Schedule/${scheduleId}`;
    const practitioners = (schedule.actor ?? []).map((a) => a.reference).filter((r) => r?.startsWith('Practitioner/'));
    const busy = [
      ...this.repo.all('Slot').filter((s) => s.schedule?.reference === ref && BUSY.has(s.status)),
      ...this.repo.all('Appointment').filter((a) => a.start && !['cancelled', 'entered-in-error', 'noshow'].includes(a.status)
        && (a.participant ?? []).some((p) => practitioners.includes(referenceOf(p.actor?.reference)))),
    ];
    const out = [];
    const free = this.repo.all('Slot').filter((s) => s.schedule?.reference === ref && s.status === 'free')
      .sort((a, b) => ms(a.start) - ms(b.start));
    for (const slot of free) {
      for (let t = Math.max(ms(slot.start), from); t + duration * 60000 <= Math.min(ms(slot.end), to); t += duration * 60000) {
        const piece = { start: new Date(t).toISOString(), end: new Date(t + duration * 60000).toISOString() };
        if (!busy.some((b) => overlaps(b, piece))) out.push(piece);
      }
    }
    return { status: 200, body: { resourceType: 'Bundle', type: 'searchset', total: out.length,
      ...(out.length ? { entry: out.map((p) => ({ resource: { resourceType: 'Slot', schedule: { reference: ref, type: 'Schedule' },
        status: 'free', start: p.start.replace('.000Z', 'Z'), end: p.end.replace('.000Z', 'Z') } })) } : {}) } };
  }

  // -- the front desk ---------------------------------------------------------------------------------------

  /** POST /$take-slot: the front desk takes a Slot (optionally booking a non-bridge Appointment into it). */
  async takeSlot(spec) {
    if (!spec || typeof spec !== 'object') throw fail(400, 'invalid', 'Expected {"slot": "Slot/<id>", ...}');
    const status = spec.status ?? 'busy';
    if (!BUSY.has(status)) throw fail(400, 'invalid', 'status must be busy, busy-unavailable or busy-tentative');
    const id = referenceOf(spec.slot)?.replace(/^Slot\//, '') ?? String(spec.slot ?? '');
    return this.lock.run(async () => {
      const slot = this.repo.current('Slot', id);
      if (!slot) throw fail(404, 'not-found', 'Slot not found');
      const result = {};
      if (spec.appointment) {
        const appointment = this.#bookedAppointment({ resourceType: 'Appointment', participant: [] }, [slot],
          spec.patient ? [referenceOf(spec.patient)] : [], undefined);
        result.slot = await this.repo.updateResource({ ...deepClone(slot), status });
        result.appointment = await this.repo.createResource(appointment);
      } else {
        result.slot = await this.repo.updateResource({ ...deepClone(slot), status });
      }
      return result;
    });
  }

  // -- CapabilityStatement ----------------------------------------------------------------------------------

  capability() {
    const epic = this.mode === 'epic';
    return {
      appointmentInteractions: epic ? ['read', 'vread', 'search-type']
        : this.mode === 'oracle' ? ['read', 'vread', 'patch', 'create', 'search-type'] : undefined,
      appointmentOperations: FIND_BOOK_MODES.has(this.mode) ? ['find', 'book'] : [],
      slotInteractions: epic ? ['read'] : this.mode === 'oracle' ? ['read', 'patch', 'search-type'] : undefined,
      scheduleInteractions: epic ? ['read'] : undefined,
    };
  }
}
