import { Entity, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';

/**
 * The durable event log of one subgraph (its own Postgres schema): every event a client can subscribe to, with an
 * increasing sequence per stream (`job:<id>`, `jobs:<tenant>`, `training:<id>`, …). Written in the same transaction
 * as the change it reports (an outbox), published to the broker by the relay, replayed to subscribers who resume.
 */
@Entity({ tableName: 'event_log' })
export class EventLogEntity {
  [OptionalProps]?: 'occurredAt' | 'publishedAt';

  @PrimaryKey({ type: 'text' })
  stream!: string;

  @PrimaryKey({ type: 'integer' })
  sequence!: number;

  @Property({ type: 'text' })
  type!: string;

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  routingKey!: string;

  @Property({ type: 'json' })
  payload!: Record<string, unknown>;

  @Property({ type: 'timestamptz' })
  occurredAt: Date = new Date();

  @Property({ type: 'timestamptz', nullable: true })
  publishedAt: Date | null = null;
}

/** The head of each stream: its last sequence, incremented under a row lock so sequences never repeat or skip. */
@Entity({ tableName: 'event_stream' })
export class EventStreamEntity {
  @PrimaryKey({ type: 'text' })
  stream!: string;

  @Property({ type: 'integer' })
  lastSequence!: number;
}
