// FHIR Subscription delivery (Medplum's fhir-router stores Subscriptions but sends nothing; its server does
// that in a BullMQ worker that needs Redis and Postgres).
//
// R4 criteria-based rest-hook (https://hl7.org/fhir/R4/subscription.html):
//   * criteria `Type?search`, matched on the new version with @medplum/core's
//     resourceMatchesSubscriptionCriteria (also its fhir-path-criteria-expression / supported-interaction
//     extensions); a delete notifies nothing in R4 (criteria apply to the new version);
//   * a client creates it `requested`; the server checks it and sets `active` (no ping: R4 defines none);
//   * channel.payload absent: POST <endpoint> with no body; `application/fhir+json`: PUT <endpoint>/<Type>/<id>
//     with the resource ("the URL is interpreted as the service base, and an update (PUT) is made";
//     HAPI's rest-hook subscriber), DELETE for a delete;
//   * style `medplum` (a Subscription with a medplum.com extension, or FHIR_SUBSCRIPTION_STYLE=medplum): POST
//     <endpoint> with the resource version, X-Medplum-* headers, X-Signature = hex HMAC-SHA256 of the body sent
//     when the subscription-secret extension is set, deletes notified (Medplum workers/subscription.ts).
// R4B/R5 backport, topic-based (http://hl7.org/fhir/uv/subscriptions-backport, R4 profiles):
//   * criteria = a topic canonical this server offers (TOPICS; advertised on /metadata), filters from the
//     backport-filter-criteria extension (search syntax, ANDed);
//   * `requested` → a handshake Bundle; 2xx → `active`, otherwise `error`;
//   * notifications are history Bundles whose first entry is the status Parameters
//     (backport-subscription-status-r4); events numbered per Subscription; payload empty | id-only | full-resource;
//   * heartbeats every backport-heartbeat-period seconds; $status and $events.
// Both: channel.header entries are sent as headers (split at the first ':'); a failed delivery (non-2xx,
// timeout, connection error) is retried `attempts` times with exponential backoff, then the Subscription goes
// to `error` with Subscription.error set; events keep being counted; the client reactivates it by setting
// `requested` again. Deliveries of one Subscription go out one at a time, in event order.
import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  OperationOutcomeError, badRequest, deepClone, evalFhirPathTyped, globalSchema, matchesSearchRequest,
  parseSearchRequest, resourceMatchesSubscriptionCriteria, toTypedValue,
} from '@medplum/core';

const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/';
const MEDPLUM_SECRET = 'https://www.medplum.com/fhir/StructureDefinition/subscription-secret';
const MEDPLUM_ATTEMPTS = 'https://medplum.com/fhir/StructureDefinition/subscription-max-attempts';
const MEDPLUM_INTERACTION = 'https://medplum.com/fhir/StructureDefinition/subscription-supported-interaction';
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const MAX_STORED_EVENTS = 1000;

/** The topics this server offers (R4B SubscriptionTopic semantics, held as configuration in R4). */
export const TOPICS = [{
  url: 'https://cal-ehr-bridge.dev/fhir/SubscriptionTopic/appointment-changed',
  title: 'Appointment changed: status, start or end updated, or deleted',
  resource: 'Appointment',
  interactions: ['update', 'delete'],
  fhirPathCriteria: '%previous.status != %current.status or %previous.start != %current.start or %previous.end != %current.end',
}];

const ext = (element, url) => (element?.extension ?? []).find((e) => e.url === url);
const isTopicBased = (subscription) => /^https?:\/\//.test(subscription.criteria ?? '');

export class Subscriptions {
  constructor(repo, settings = {}) {
    this.repo = repo;
    this.settings = {
      style: 'r4', attempts: 3, retryMs: 1000, timeoutMs: 10000, heartbeatScale: 1, ...settings,
    };
    this.baseUrl = () => 'http://127.0.0.1';
    this.state = new Map(); // id -> {events, stored: [], queue, timer}
    this.deliveries = [];
    this.fault = null; // {mode: drop|duplicate|delay|reorder, count, delayMs}
    this.held = null; // a notification kept back by the reorder fault
    this.chain = Promise.resolve();
    repo.listeners.push((change) => this.#onChange(change));
    repo.beforeWrite.push((resource) => resource.resourceType === 'Subscription' && this.validate(resource));
  }

  // -- configuration and test hooks ----------------------------------------------------------------------

  configure({ fault, settings } = {}) {
    if (settings !== undefined) {
      const allowed = { style: ['r4', 'medplum'], attempts: 'int', retryMs: 'int', timeoutMs: 'int', heartbeatScale: 'number' };
      for (const [key, value] of Object.entries(settings)) {
        const rule = allowed[key];
        if (!rule) throw new Error(`unknown setting ${key}`);
        if (Array.isArray(rule) ? !rule.includes(value) : !(typeof value === 'number' && value >= 0
          && (rule !== 'int' || Number.isInteger(value)) && value <= 600000)) throw new Error(`invalid setting ${key}`);
      }
      if (settings.attempts === 0) throw new Error('attempts must be at least 1');
      Object.assign(this.settings, settings);
      for (const subscription of this.repo.all('Subscription')) this.#heartbeat(subscription);
    }
    if (fault !== undefined) {
      if (fault === null || Object.keys(fault).length === 0) this.fault = null;
      else {
        const { mode, count = 1, delayMs = 0 } = fault;
        if (!['drop', 'duplicate', 'delay', 'reorder'].includes(mode)) throw new Error('fault.mode must be drop, duplicate, delay or reorder');
        if (!Number.isInteger(count) || count < 1) throw new Error('fault.count must be a positive integer');
        if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 600000) throw new Error('fault.delayMs must be 0..600000 ms');
        this.fault = { mode, count, delayMs };
      }
    }
    return { settings: this.settings, fault: this.fault };
  }

  reset() {
    for (const state of this.state.values()) clearInterval(state.timer);
    this.state.clear();
    this.deliveries = [];
    this.fault = null;
    this.held = null;
  }

  /** Counters and stored events, for the snapshot file. */
  exportState() {
    return Object.fromEntries([...this.state].map(([id, s]) => [id, { events: s.events, stored: s.stored }]));
  }

  importState(document) {
    for (const [id, saved] of Object.entries(document ?? {})) {
      Object.assign(this.#state(id), { events: saved.events ?? 0, stored: saved.stored ?? [] });
    }
    for (const subscription of this.repo.all('Subscription')) this.#heartbeat(subscription);
  }

  /** Settles when every change seen so far has been routed and every queued delivery has finished. */
  async idle() {
    await this.chain;
    await Promise.all([...this.state.values()].map((s) => s.queue));
  }

  // -- validation (a write rule: runs on every Subscription write) ----------------------------------------

  validate(subscription) {
    const problem = (text) => { throw new OperationOutcomeError({ resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'not-supported', details: { text } }] }); };
    const channel = subscription.channel ?? {};
    if (channel.type !== 'rest-hook') problem(`channel.type ${JSON.stringify(channel.type)} is not supported (rest-hook only)`);
    let endpoint;
    try { endpoint = new URL(channel.endpoint ?? ''); } catch { problem('channel.endpoint must be an http(s) URL'); }
    if (!['http:', 'https:'].includes(endpoint.protocol)) problem('channel.endpoint must be an http(s) URL');
    if (!LOOPBACK.has(endpoint.hostname)) problem('channel.endpoint must be a loopback address on this local server');
    for (const header of channel.header ?? []) {
      if (typeof header !== 'string' || header.indexOf(':') < 1) problem('channel.header entries must be "Name: value"');
    }
    const payload = channel.payload;
    if (payload !== undefined && !/^application\/(fhir\+)?json(\s*;.*)?$/.test(payload)) problem(`channel.payload ${payload} is not supported`);
    if (isTopicBased(subscription)) {
      const topic = TOPICS.find((t) => t.url === subscription.criteria);
      if (!topic) problem(`Topic ${subscription.criteria} is not offered by this server`);
      const content = ext(channel._payload, `${BACKPORT}backport-payload-content`)?.valueCode;
      if (!payload) problem('A topic-based Subscription needs channel.payload');
      if (!['empty', 'id-only', 'full-resource'].includes(content)) problem('channel.payload needs the backport-payload-content extension (empty | id-only | full-resource)');
      for (const filter of this.#filters(subscription)) {
        const request = parseSearchRequest(filter);
        if (request.resourceType !== topic.resource) problem(`Filter ${filter} must search ${topic.resource}`);
        this.#knownParameters(request, problem);
      }
    } else {
      const type = (subscription.criteria ?? '').split('?')[0];
      if (!globalSchema.types[type]) problem('criteria must be <ResourceType>?<search> or a topic canonical');
      this.#knownParameters(parseSearchRequest(subscription.criteria), problem);
    }
  }

  #knownParameters(request, problem) {
    for (const filter of request.filters ?? []) {
      if (!globalSchema.types[request.resourceType]?.searchParams?.[filter.code]) problem(`Unknown search parameter in criteria: ${filter.code}`);
    }
  }

  #filters(subscription) {
    return (subscription._criteria?.extension ?? []).filter((e) => e.url === `${BACKPORT}backport-filter-criteria`)
      .map((e) => e.valueString);
  }

  // -- change routing -------------------------------------------------------------------------------------

  #onChange(change) {
    const resource = change.current ?? change.previous;
    if (resource.resourceType === 'Subscription') {
      if (change.current?.status === 'requested') this.#serially(() => this.#activate(change.current.id));
      if (!change.current) {
        clearInterval(this.state.get(resource.id)?.timer);
      } else this.#heartbeat(change.current);
      return;
    }
    this.#serially(() => this.#route(change));
  }

  /** Changes are routed one after the other, in write order (event numbers follow it); a failure is logged. */
  #serially(task) {
    this.chain = this.chain.then(task).catch((err) => console.error('[fhir-server] subscriptions:', err));
  }

  async #route(change) {
    for (const subscription of this.repo.all('Subscription')) {
      if (subscription.status !== 'active' && subscription.status !== 'error') continue;
      if (subscription.end && Date.parse(subscription.end) <= Date.now()) {
        if (subscription.status === 'active') await this.#setStatus(subscription.id, 'off');
        continue;
      }
      if (!(await this.#matches(subscription, change))) continue;
      const state = this.#state(subscription.id);
      const resource = change.current ?? change.previous;
      if (isTopicBased(subscription)) {
        state.events += 1;
        const event = { number: state.events, timestamp: change.current?.meta?.lastUpdated ?? new Date().toISOString(),
          type: resource.resourceType, id: resource.id, interaction: change.interaction };
        state.stored.push(event);
        if (state.stored.length > MAX_STORED_EVENTS) state.stored.shift();
        if (subscription.status === 'active') this.#enqueue(subscription.id, { kind: 'event-notification', events: [event], resource: change.current });
      } else if (subscription.status === 'active') {
        this.#enqueue(subscription.id, { kind: 'rest-hook', interaction: change.interaction, resource: deepClone(resource) });
      }
    }
  }

  async #matches(subscription, change) {
    const resource = change.current ?? change.previous;
    if (isTopicBased(subscription)) {
      const topic = TOPICS.find((t) => t.url === subscription.criteria);
      if (!topic || topic.resource !== resource.resourceType || !topic.interactions.includes(change.interaction)) return false;
      if (change.interaction === 'update' && topic.fhirPathCriteria) {
        const result = evalFhirPathTyped(topic.fhirPathCriteria, [toTypedValue(change.current)],
          { '%current': toTypedValue(change.current), '%previous': toTypedValue(change.previous ?? {}) });
        if (result?.[0]?.value !== true) return false;
      }
      return this.#filters(subscription).every((filter) => matchesSearchRequest(resource, parseSearchRequest(filter)));
    }
    const medplum = this.#medplumStyle(subscription);
    if (change.interaction === 'delete') {
      const wanted = ext(subscription, MEDPLUM_INTERACTION)?.valueCode;
      if (!medplum && wanted !== 'delete') return false;
    }
    return resourceMatchesSubscriptionCriteria({
      resource, subscription, context: { interaction: change.interaction },
      getPreviousResource: async () => change.previous,
    });
  }

  #medplumStyle(subscription) {
    return this.settings.style === 'medplum' || (subscription.extension ?? []).some((e) => /medplum\.com/.test(e.url));
  }

  #state(id) {
    let state = this.state.get(id);
    if (!state) {
      state = { events: 0, stored: [], queue: Promise.resolve(), timer: undefined };
      this.state.set(id, state);
    }
    return state;
  }

  // -- lifecycle ------------------------------------------------------------------------------------------

  async #activate(id) {
    const subscription = this.repo.current('Subscription', id);
    if (subscription?.status !== 'requested') return;
    if (!isTopicBased(subscription)) {
      await this.#setStatus(id, 'active');
      return;
    }
    this.#enqueue(id, { kind: 'handshake' });
  }

  async #setStatus(id, status, error) {
    const current = this.repo.current('Subscription', id);
    if (!current) return;
    const next = { ...deepClone(current), status };
    if (error) next.error = error; else delete next.error;
    await this.repo.updateResource(next);
  }

  #heartbeat(subscription) {
    const state = this.#state(subscription.id);
    clearInterval(state.timer);
    state.timer = undefined;
    const period = ext(subscription.channel, `${BACKPORT}backport-heartbeat-period`)?.valueUnsignedInt;
    if (subscription.status !== 'active' || !isTopicBased(subscription) || !period || !this.settings.heartbeatScale) return;
    state.timer = setInterval(() => this.#enqueue(subscription.id, { kind: 'heartbeat' }),
      Math.max(10, period * 1000 * this.settings.heartbeatScale));
    state.timer.unref();
  }

  /** POST /$heartbeat: one heartbeat now. */
  forceHeartbeat(id) {
    const subscription = this.repo.current('Subscription', id);
    if (!subscription || !isTopicBased(subscription)) throw new Error('not a topic-based Subscription');
    this.#enqueue(id, { kind: 'heartbeat' });
  }

  // -- delivery -------------------------------------------------------------------------------------------

  #enqueue(id, notification) {
    const state = this.#state(id);
    state.queue = state.queue.then(() => this.#deliver(id, notification))
      .catch((err) => console.error('[fhir-server] subscription delivery:', err));
  }

  async #deliver(id, notification) {
    const subscription = this.repo.current('Subscription', id);
    if (!subscription) return;
    if (notification.kind !== 'handshake' && subscription.status !== 'active') {
      this.#record(id, notification, 0, 'not sent: subscription is not active');
      return;
    }
    const fault = this.#takeFault();
    if (fault?.mode === 'drop') {
      this.#record(id, notification, 0, 'dropped (fault)');
      return;
    }
    if (fault?.mode === 'delay') await sleep(fault.delayMs);
    if (fault?.mode === 'reorder') {
      this.held = { id, notification };
      this.#record(id, notification, 0, 'held back (fault: reorder)');
      return;
    }
    const { ok, error } = await this.#attempts(subscription, notification);
    if (fault?.mode === 'duplicate') await this.#attempts(subscription, notification);
    if (this.held) {
      const held = this.held;
      this.held = null;
      const heldSubscription = this.repo.current('Subscription', held.id);
      if (heldSubscription) await this.#attempts(heldSubscription, held.notification);
    }
    if (notification.kind === 'handshake') await this.#setStatus(id, ok ? 'active' : 'error', error);
    else if (!ok) await this.#setStatus(id, 'error', error);
  }

  #takeFault() {
    if (!this.fault) return null;
    const fault = this.fault;
    if (--this.fault.count <= 0) this.fault = null;
    return fault;
  }

  async #attempts(subscription, notification) {
    const attempts = ext(subscription, MEDPLUM_ATTEMPTS)?.valueInteger ?? this.settings.attempts;
    const timeoutSeconds = ext(subscription.channel, `${BACKPORT}backport-timeout`)?.valueUnsignedInt;
    const timeoutMs = timeoutSeconds ? timeoutSeconds * 1000 : this.settings.timeoutMs;
    let error;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const request = this.#request(subscription, notification);
      let status;
      try {
        const response = await fetch(request.url, { method: request.method, headers: request.headers, body: request.body,
          redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
        await response.arrayBuffer().catch(() => undefined);
        status = response.status;
      } catch (err) {
        status = err?.name === 'TimeoutError' ? 'timeout' : `connection error (${err?.cause?.code ?? err?.name ?? 'unknown'})`;
      }
      this.#record(subscription.id, notification, attempt, status, request);
      if (typeof status === 'number' && status >= 200 && status < 300) return { ok: true };
      error = typeof status === 'number' ? `HTTP ${status} from the endpoint` : status;
      if (attempt < attempts) await sleep(this.settings.retryMs * 2 ** (attempt - 1));
    }
    return { ok: false, error };
  }

  #record(id, notification, attempt, status, request) {
    this.deliveries.push({
      subscription: id, kind: notification.kind, attempt, status, at: new Date().toISOString(),
      ...(notification.events ? { eventNumbers: notification.events.map((e) => e.number) } : {}),
      ...(notification.interaction ? { interaction: notification.interaction } : {}),
      ...(request ? { method: request.method, url: request.url } : {}),
    });
    if (this.deliveries.length > 10000) this.deliveries.shift();
  }

  #request(subscription, notification) {
    const channel = subscription.channel;
    const headers = {};
    for (const header of channel.header ?? []) {
      const colon = header.indexOf(':');
      headers[header.substring(0, colon).trim()] = header.substring(colon + 1).trim();
    }
    const endpoint = channel.endpoint;
    if (isTopicBased(subscription)) {
      const body = JSON.stringify(this.notificationBundle(subscription, notification));
      return { method: 'POST', url: endpoint, headers: { ...headers, 'Content-Type': channel.payload }, body };
    }
    const resource = notification.resource;
    if (this.#medplumStyle(subscription)) {
      const body = notification.interaction === 'delete' ? '{}' : JSON.stringify(resource);
      const medplum = { 'Content-Type': 'application/fhir+json', 'X-Medplum-Subscription': subscription.id,
        'X-Medplum-Interaction': notification.interaction };
      if (notification.interaction === 'delete') medplum['X-Medplum-Deleted-Resource'] = `${resource.resourceType}/${resource.id}`;
      const secret = ext(subscription, MEDPLUM_SECRET)?.valueString;
      if (secret) medplum['X-Signature'] = createHmac('sha256', secret).update(body).digest('hex');
      return { method: 'POST', url: endpoint, headers: { ...headers, ...medplum }, body };
    }
    if (!channel.payload) return { method: 'POST', url: endpoint, headers, body: undefined };
    const url = `${endpoint.replace(/\/+$/, '')}/${resource.resourceType}/${resource.id}`;
    if (notification.interaction === 'delete') return { method: 'DELETE', url, headers, body: undefined };
    return { method: 'PUT', url, headers: { ...headers, 'Content-Type': channel.payload }, body: JSON.stringify(resource) };
  }

  // -- backport Bundles -----------------------------------------------------------------------------------

  statusParameters(subscription, type, events = []) {
    const base = this.baseUrl();
    const content = ext(subscription.channel?._payload, `${BACKPORT}backport-payload-content`)?.valueCode ?? 'id-only';
    const state = this.#state(subscription.id);
    const id = randomUUID();
    return {
      resourceType: 'Parameters', id,
      meta: { profile: [`${BACKPORT}backport-subscription-status-r4`] },
      parameter: [
        { name: 'subscription', valueReference: { reference: `${base}/Subscription/${subscription.id}` } },
        { name: 'topic', valueCanonical: subscription.criteria },
        { name: 'status', valueCode: subscription.status },
        { name: 'type', valueCode: type },
        { name: 'events-since-subscription-start', valueString: String(state.events) },
        ...events.map((event) => ({ name: 'notification-event', part: [
          { name: 'event-number', valueString: String(event.number) },
          { name: 'timestamp', valueInstant: event.timestamp },
          ...(content === 'empty' ? [] : [{ name: 'focus', valueReference: { reference: `${base}/${event.type}/${event.id}` } }]),
        ] })),
      ],
    };
  }

  notificationBundle(subscription, notification, type = notification.kind) {
    const base = this.baseUrl();
    const content = ext(subscription.channel?._payload, `${BACKPORT}backport-payload-content`)?.valueCode ?? 'id-only';
    const parameters = this.statusParameters(subscription, type, notification.events ?? []);
    const entry = [{ fullUrl: `urn:uuid:${parameters.id}`, resource: parameters,
      request: { method: 'GET', url: `${base}/Subscription/${subscription.id}/$status` }, response: { status: '200' } }];
    if (content !== 'empty') {
      for (const event of notification.events ?? []) {
        const method = { create: 'POST', update: 'PUT', delete: 'DELETE' }[event.interaction];
        const current = event.interaction === 'delete' ? undefined
          : (notification.resource && notification.resource.id === event.id ? notification.resource : this.repo.current(event.type, event.id));
        entry.push({
          fullUrl: `${base}/${event.type}/${event.id}`,
          ...(content === 'full-resource' && current ? { resource: deepClone(current) } : {}),
          request: { method, url: method === 'POST' ? event.type : `${event.type}/${event.id}` },
          response: { status: { POST: '201', PUT: '200', DELETE: '204' }[method] },
        });
      }
    }
    return { resourceType: 'Bundle', id: randomUUID(),
      meta: { profile: [`${BACKPORT}backport-subscription-notification-r4`] },
      type: 'history', timestamp: new Date().toISOString(), entry };
  }

  /** GET Subscription/<id>/$status (or ?id=a,b on the type). */
  status(ids) {
    const entry = ids.map((id) => {
      const subscription = this.repo.current('Subscription', id);
      if (!subscription) throw new OperationOutcomeError(badRequest(`Subscription/${id} not found`));
      if (!isTopicBased(subscription)) throw new OperationOutcomeError(badRequest(`Subscription/${id} is not topic-based`));
      const parameters = this.statusParameters(subscription, 'query-status');
      return { fullUrl: `urn:uuid:${parameters.id}`, resource: parameters, search: { mode: 'match' } };
    });
    return { resourceType: 'Bundle', type: 'searchset', total: entry.length, ...(entry.length ? { entry } : {}) };
  }

  /** GET Subscription/<id>/$events?eventsSinceNumber=&eventsUntilNumber= (events this server still holds). */
  events(id, since, until) {
    const subscription = this.repo.current('Subscription', id);
    if (!subscription || !isTopicBased(subscription)) throw new OperationOutcomeError(badRequest(`Subscription/${id} is not a topic-based Subscription here`));
    const state = this.#state(id);
    const events = state.stored.filter((e) => e.number >= (since ?? 1) && e.number <= (until ?? state.events));
    return this.notificationBundle(subscription, { kind: 'query-event', events }, 'query-event');
  }
}
