import { Entity, Enum, Index, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { AuditOutcome } from './monitoring.contracts.js';

/** One mutation as the gateway saw it. Never changed; deleted only by age, when AUDIT_RETENTION_DAYS is set. */
@Entity({ tableName: 'audit_event' })
@Index({
  name: 'audit_event_tenant_at_index',
  // Keyset pagination, newest first (lib/graphql/connection.ts); the time filters use it too.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "at" desc, "id" desc)`,
})
@Index({
  name: 'audit_event_at_index',
  // The retention pass (AUDIT_RETENTION_DAYS) deletes the oldest first, across tenants.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("at")`,
})
export class AuditEventEntity {
  [OptionalProps]?: 'id' | 'operationName' | 'errorCode' | 'traceId' | 'createdAt';

  /** The gateway's event id when it sent one, so that a redelivered event is stored once. */
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  /** Subject of the caller. */
  @Property({ type: 'text' })
  actor!: string;

  @Property({ type: 'json' })
  roles!: string[];

  @Property({ type: 'text', nullable: true })
  operationName: string | null = null;

  /** Root mutation field, e.g. `promoteModelVersion`. */
  @Property({ type: 'text' })
  fieldName!: string;

  /** Operation variables with secrets redacted. */
  @Property({ type: 'json' })
  variables!: Record<string, unknown>;

  @Enum({ items: () => AuditOutcome, type: 'text' })
  outcome!: AuditOutcome;

  @Property({ type: 'text', nullable: true })
  errorCode: string | null = null;

  @Property({ type: 'text', nullable: true })
  traceId: string | null = null;

  /**
   * When the gateway saw the mutation: the column is "at"; the property is createdAt so that the shared keyset
   * pagination (on createdAt, id) applies unchanged.
   */
  @Property({ type: 'timestamptz', fieldName: 'at' })
  createdAt: Date = new Date();
}
