// Owns the audit log: every mutation the gateway saw, stored once per event with its secrets redacted.
import type { EntityManager } from '@mikro-orm/core';
import { GraphQLError } from 'graphql';
import { entityRow, insertRowsSql } from '../../lib/db.js';
import { badInput } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { redactSecrets } from '../../lib/security/redact.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { AuditOutcome } from './monitoring.contracts.js';
import type { AuditEventListFilter, MonitoringRepository } from './monitoring.repository.js';

export { REDACTED, redactSecrets } from '../../lib/security/redact.js';

export interface Actor {
  tenant: string;
  subject: string;
}

/** What the gateway reports about one mutation. */
export interface AuditEventRecord {
  /** The event's id (uuid): a redelivered event with the same id is stored once. */
  id?: string | null;
  tenant: string;
  actor: string;
  roles: readonly string[];
  operationName?: string | null;
  fieldName: string;
  /** Redacted again here, whatever the sender did. */
  variables?: Record<string, unknown> | null;
  outcome: AuditOutcome;
  errorCode?: string | null;
  traceId?: string | null;
  at?: Date;
}

const MAX_VARIABLES_BYTES = 32 * 1024;
const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]{0,199}$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const ERROR_CODE = /^[A-Za-z0-9_.-]{1,64}$/;

export class AuditService {
  constructor(private readonly repository: MonitoringRepository) {}

  /** Stores one audit event; a redelivered event (same id) returns the stored one and stores nothing. */
  async record(em: EntityManager, event: AuditEventRecord): Promise<AuditEventEntity> {
    const [entity] = this.entities([event]);
    if (entity instanceof GraphQLError) throw entity;
    await this.insert(em, [entity!]);
    return (await this.repository.findAuditEventById(em, entity!.id))!;
  }

  /**
   * Stores a batch of events in one statement, each id once however often it is delivered (a batch may hold the same
   * event twice). One outcome per event, in order: true (stored, or stored before), or the error that makes it invalid.
   */
  async recordMany(em: EntityManager, events: AuditEventRecord[]): Promise<(true | GraphQLError)[]> {
    const entities = this.entities(events);
    await this.insert(em, entities.filter((e): e is AuditEventEntity => !(e instanceof GraphQLError)));
    return entities.map((e) => (e instanceof GraphQLError ? e : true));
  }

  private entities(events: AuditEventRecord[]): (AuditEventEntity | GraphQLError)[] {
    return events.map((event) => {
      try {
        return Object.assign(new AuditEventEntity(), this.validate(event));
      } catch (error) {
        if (error instanceof GraphQLError) return error;
        throw error;
      }
    });
  }

  private async insert(em: EntityManager, entities: AuditEventEntity[]): Promise<void> {
    if (entities.length === 0) return;
    const rows = new Map(entities.map((e) => [e.id, entityRow(em, e)]));
    await em.getConnection().execute(`${insertRowsSql(em, 'audit_event')} on conflict ("id") do nothing`, [JSON.stringify([...rows.values()])], 'run');
  }

  async list<N>(
    em: EntityManager,
    actor: Actor,
    filter: AuditEventListFilter,
    page: { first?: number | null; after?: string | null },
    map: (e: AuditEventEntity) => N,
  ) {
    checkTimeRange(filter.from, filter.to);
    return this.repository.pageAuditEvents(em, actor.tenant, filter, page, map);
  }

  private validate(event: AuditEventRecord) {
    if (event.id != null && !isUuid(event.id)) throw badInput('id must be a uuid', 'id');
    if (!event.tenant) throw badInput('tenant is required', 'tenant');
    if (!event.actor) throw badInput('actor is required', 'actor');
    if (!GRAPHQL_NAME.test(event.fieldName)) throw badInput('fieldName must be a GraphQL field name', 'fieldName');
    if (event.operationName != null && !GRAPHQL_NAME.test(event.operationName)) {
      throw badInput('operationName must be a GraphQL operation name', 'operationName');
    }
    if (!Object.values(AuditOutcome).includes(event.outcome)) {
      throw badInput(`outcome must be one of ${Object.values(AuditOutcome).join(', ')}`, 'outcome');
    }
    if (event.errorCode != null && !ERROR_CODE.test(event.errorCode)) throw badInput('errorCode must be an error code', 'errorCode');
    if (event.traceId != null && !TRACE_ID.test(event.traceId)) throw badInput('traceId must be a W3C trace id', 'traceId');
    if (event.at && Number.isNaN(event.at.getTime())) throw badInput('at must be a valid time', 'at');
    let variables = redactSecrets(event.variables ?? {}) as Record<string, unknown>;
    const bytes = Buffer.byteLength(JSON.stringify(variables));
    if (bytes > MAX_VARIABLES_BYTES) variables = { truncated: true, bytes };
    return {
      ...(event.id ? { id: event.id } : {}),
      tenant: event.tenant,
      actor: event.actor,
      roles: event.roles.map(String),
      operationName: event.operationName ?? null,
      fieldName: event.fieldName,
      variables,
      outcome: event.outcome,
      errorCode: event.errorCode ?? null,
      traceId: event.traceId ?? null,
      createdAt: event.at ?? new Date(),
    };
  }
}

export function checkTimeRange(from: Date | null | undefined, to: Date | null | undefined): void {
  if (from && to && from.getTime() >= to.getTime()) throw badInput('"from" must be before "to"', 'from');
}
