// Medplum's MemoryRepository with three additions the stand-ins need:
//  * every write is checked against rules.mjs (also PATCH results and batch entries) and reported to
//    listeners as {interaction, previous, current} (`previous` = the version before: FHIRPath %previous);
//  * search follows FHIR's strict/lenient handling of unknown parameters and resolves chained parameters
//    (`schedule.actor=…`), as a FHIR server does (Medplum's own in-memory search silently matches nothing);
//  * hooks for the scheduling dialects (search rules, Slot bookkeeping after an Appointment write).
// Writes made while loading a snapshot or by $reset go around this class and notify nobody.
import { OperationOutcomeError, badRequest, deepClone, globalSchema, parseSearchRequest } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import { apiRequest } from './context.mjs';
import { enumIssues, slotIssues } from './rules.mjs';

// Result parameters Medplum's parser understands (core src/search/search.ts parseKeyValue).
const RESULT_PARAMETERS = new Set(['_sort', '_cursor', '_count', '_offset', '_total', '_summary', '_fields', '_elements',
  '_type', '_format', '_pretty', '_include', '_']);

export class StandInRepository extends MemoryRepository {
  constructor() {
    super();
    this.listeners = [];
    this.beforeWrite = []; // (resource, previous) => void; throws to refuse the write
    this.afterWrite = []; // async (stored, previous) => void, inside the write
    this.searchRules = []; // async (searchRequest, context) => void, API searches only
  }

  current(resourceType, id) {
    return this.resources.get(resourceType)?.get(id);
  }

  all(resourceType) {
    return [...(this.resources.get(resourceType)?.values() ?? [])];
  }

  async createResource(resource, options) {
    const previous = resource.id ? this.current(resource.resourceType, resource.id) : undefined;
    const issues = enumIssues(resource);
    if (resource.resourceType === 'Slot') issues.push(...slotIssues(resource, (t, id) => !!this.current(t, id)));
    if (issues.length) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
    for (const hook of this.beforeWrite) hook(resource, previous);
    const stored = await super.createResource(resource, options);
    const before = previous ? deepClone(previous) : undefined;
    for (const hook of this.afterWrite) await hook(stored, before);
    this.#emit({ interaction: before ? 'update' : 'create', previous: before, current: deepClone(stored) });
    return stored;
  }

  async deleteResource(resourceType, id) {
    const previous = this.current(resourceType, id);
    await super.deleteResource(resourceType, id);
    if (!previous) return;
    const before = deepClone(previous);
    for (const hook of this.afterWrite) await hook(undefined, before);
    this.#emit({ interaction: 'delete', previous: before, current: undefined });
  }

  #emit(change) {
    for (const listener of this.listeners) {
      try { listener(change); } catch (err) { console.error('[fhir-server] change listener failed:', err); }
    }
  }

  /** Search without the API rules (the server's own reads). */
  searchRaw(searchRequest) {
    return super.search(searchRequest);
  }

  async search(searchRequest) {
    const context = apiRequest();
    if (!context) return super.search(searchRequest);
    const request = { ...searchRequest, filters: [...(searchRequest.filters ?? [])] };
    for (const rule of this.searchRules) await rule(request, context);
    const filters = [];
    for (const filter of request.filters) {
      const code = filter.code;
      if (code.includes('.') && !code.startsWith('_has')) {
        const resolved = await this.#resolveChain(request.resourceType, filter, context);
        if (resolved) filters.push(resolved);
      } else if (globalSchema.types[request.resourceType]?.searchParams?.[code]) {
        filters.push(filter);
      } else {
        unsupported(context, code, RESULT_PARAMETERS.has(code) ? 'Unsupported' : 'Unknown');
      }
    }
    if (request.revInclude?.length) unsupported(context, '_revinclude', 'Unsupported');
    for (const target of request.include ?? []) {
      const param = globalSchema.types[target.resourceType]?.searchParams?.[target.searchParam];
      if (target.resourceType !== request.resourceType || param?.type !== 'reference') {
        unsupported(context, `_include=${target.resourceType}:${target.searchParam}`, 'Unsupported');
      }
    }
    return super.search({ ...request, filters, revInclude: undefined });
  }

  // `a.b=v` / `a:Type.b=v`: the references of `a` whose target matches `b=v` (one level per step, recursive).
  async #resolveChain(resourceType, filter, context) {
    const dot = filter.code.indexOf('.');
    const [code, targetType] = filter.code.substring(0, dot).split(':');
    const rest = filter.code.substring(dot + 1);
    const param = globalSchema.types[resourceType]?.searchParams?.[code];
    if (param?.type !== 'reference') {
      unsupported(context, filter.code, 'Unknown');
      return undefined;
    }
    const targets = (targetType ? [targetType] : param.target ?? []).filter((type) => {
      const restCode = rest.split(/[.:]/)[0];
      return globalSchema.types[type]?.searchParams?.[restCode];
    });
    if (targets.length === 0) {
      throw new OperationOutcomeError(badRequest(`Invalid chained search parameter: ${filter.code}`));
    }
    const prefix = filter.operator && !['eq', '='].includes(filter.operator) && /^[a-z]{2}$/.test(filter.operator)
      ? filter.operator : '';
    const references = [];
    for (const type of targets) {
      const inner = parseSearchRequest(`${type}?${new URLSearchParams([[rest, prefix + filter.value]])}`);
      const bundle = await this.search({ ...inner, count: 10000 });
      for (const entry of bundle.entry ?? []) references.push(`${type}/${entry.resource.id}`);
    }
    // No target matched: a reference value nothing carries, so the search finds nothing (not everything).
    return { code, operator: 'eq', value: references.length ? references.join(',') : `${targets[0]}/-no-match-` };
  }
}

function unsupported(context, code, kind) {
  if (context.strict) throw new OperationOutcomeError(badRequest(`${kind} search parameter: ${code}`));
  if (!context.ignored.includes(code)) context.ignored.push(code);
}
